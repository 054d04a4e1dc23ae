"""The store on TimescaleDB (PGlite harness), and the same queries on both flavours.

PGlite serves one connection at a time: every test closes its connection before the next
migrate() (which opens its own).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from gateway.config import StoreSection
from gateway.errors import MigrationError
from gateway.events import CountData, Event
from gateway.store import DeadLetter, connect, migrate, prune, write_batch
from gateway.store.migrate import load_migrations
from gateway.testing import count_event as make_count_event
from gateway.testing import received

pytestmark = pytest.mark.integration

TIMESCALE_FILES = [m.file for m in load_migrations("timescaledb")]


def store(dsn: str, **kw: Any) -> StoreSection:
    return StoreSection(dsn=SecretStr(dsn), **kw)


async def jobs(dsn: str) -> dict[str, dict[str, Any]]:
    c = await asyncpg.connect(dsn)
    try:
        rows = await c.fetch(
            "SELECT job_id, proc_name, hypertable_name, schedule_interval,"
            " (config->>'compress_after')::interval AS compress_after,"
            " (config->>'drop_after')::interval AS drop_after,"
            " config->>'start_offset' AS start_offset,"
            " (config->>'end_offset')::interval AS end_offset"
            " FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
        )
    finally:
        await c.close()
    return {f"{r['proc_name']}:{r['hypertable_name']}": dict(r) for r in rows}


async def test_timescaledb_schema_policies_and_flavour(timescale_dsn: str) -> None:
    first = await migrate(store(timescale_dsn, timescaledb="auto"))
    assert first.applied == [
        "0001_core.sql",
        "0002_timeseries.timescaledb.sql",
        "0003_dead_letters_once.sql",
        "0004_typed_tables.sql",
        "0005_oee.sql",
        "0006_work_orders_per_machine.sql",
        "0007_downtime_loss.sql",
        *(m.file for m in load_migrations("timescaledb") if m.version > "0007"),
    ]
    assert first.timescaledb is True

    c = await asyncpg.connect(timescale_dsn)
    try:
        hypertables = {
            r["hypertable_name"]
            for r in await c.fetch(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
            )
        }
        cagg = await c.fetchrow(
            "SELECT materialized_only, view_definition"
            " FROM timescaledb_information.continuous_aggregates WHERE view_name = 'counts_hourly'"
        )
        segmentby = await c.fetch(
            "SELECT attname FROM timescaledb_information.compression_settings"
            " WHERE hypertable_name = 'events' AND segmentby_column_index IS NOT NULL"
            " ORDER BY segmentby_column_index"
        )
        flavors = await c.fetch("SELECT DISTINCT flavor FROM schema_migrations")
        pk = await c.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'events'::regclass AND contype = 'p'"
        )
    finally:
        await c.close()
    assert hypertables == {"events", "counts", "state_intervals"}
    assert cagg is not None and cagg["materialized_only"] is False
    assert "time_bucket" in cagg["view_definition"]
    assert [r["attname"] for r in segmentby] == ["site", "area", "line", "machine"]
    assert [r["flavor"] for r in flavors] == ["timescaledb"]
    assert pk == "PRIMARY KEY (event_id, ts)"

    policies = await jobs(timescale_dsn)
    assert set(policies) == {
        "policy_compression:events",
        "policy_retention:events",
        "policy_refresh_continuous_aggregate:counts_hourly",
    }
    assert policies["policy_compression:events"]["compress_after"] == timedelta(days=7)
    assert policies["policy_retention:events"]["drop_after"] == timedelta(days=400)
    refresh = policies["policy_refresh_continuous_aggregate:counts_hourly"]
    assert refresh["start_offset"] is None
    assert refresh["end_offset"] == timedelta(hours=1)

    # Re-running with the same configuration changes nothing, not even the job ids.
    again = await migrate(store(timescale_dsn, timescaledb="on"))
    assert (again.applied, again.timescaledb) == ([], True)
    assert await jobs(timescale_dsn) == policies

    # A changed configuration updates the policies; retention 0 removes the policy.
    await migrate(store(timescale_dsn, compress_after_days=3, events_retention_days=0))
    changed = await jobs(timescale_dsn)
    assert changed["policy_compression:events"]["compress_after"] == timedelta(days=3)
    assert "policy_retention:events" not in changed
    assert changed["policy_refresh_continuous_aggregate:counts_hourly"] == refresh

    await migrate(store(timescale_dsn, compress_after_days=3, events_retention_days=30))
    assert (await jobs(timescale_dsn))["policy_retention:events"]["drop_after"] == timedelta(
        days=30
    )

    # The database remembers its flavour.
    with pytest.raises(MigrationError, match="set up with TimescaleDB"):
        await migrate(store(timescale_dsn, timescaledb="off"))

    # Retention belongs to the policy here: prune deletes nothing.
    c = await connect(store(timescale_dsn))
    try:
        old = count_event(machine="m1", ts=datetime.now(UTC) - timedelta(days=100), seq=1)
        assert await write_batch(c, [received(old)], []) == 1
        assert await prune(c, store(timescale_dsn, events_retention_days=30)) == 0
        assert await c.fetchval("SELECT count(*) FROM events") == 1
    finally:
        await c.close()


# --- the same queries on both flavours -----------------------------------------------------


def count_event(
    *, machine: str, ts: datetime, seq: int, order: str | None = "o-1", good: int = 5
) -> Event:
    return make_count_event(
        seq=seq, ts=ts, machine=machine, good=good, order=order, interval=timedelta(minutes=1)
    )


@dataclass(frozen=True)
class CountRow:
    machine: str
    order_id: str | None
    start: datetime
    good: int
    reject: int

    def values(self) -> tuple[Any, ...]:
        return (
            uuid.uuid4(),
            "s1",
            "a1",
            "l1",
            self.machine,
            self.order_id,
            "early",
            self.start,
            self.start + timedelta(seconds=30),
            self.good,
            self.reject,
            self.good + self.reject,
            "ok",
        )


def expected_hourly(rows: list[CountRow]) -> list[tuple[Any, ...]]:
    sums: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        key = ("s1", "a1", "l1", r.machine, r.order_id, r.start.replace(minute=0, second=0))
        acc = sums.setdefault(key, [0, 0, 0, 0])
        acc[0] += r.good
        acc[1] += r.reject
        acc[2] += r.good + r.reject
        acc[3] += 1
    ordered = sorted(sums.items(), key=lambda kv: (kv[0][3], kv[0][4] or "", kv[0][5]))
    return [(*k, *v) for k, v in ordered]


HOURLY = (
    "SELECT site, area, line, machine, order_id, bucket, good, reject, total, records"
    " FROM counts_hourly ORDER BY machine, coalesce(order_id, ''), bucket"
)
INSERT_COUNT = (
    "INSERT INTO counts (event_id, site, area, line, machine, order_id, shift_id,"
    " interval_start, interval_end, good, reject, total, quality)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
)


async def refresh(c: asyncpg.Connection, timescaledb: bool) -> None:
    if timescaledb:
        await c.execute("CALL refresh_continuous_aggregate('counts_hourly', NULL, NULL)")


async def scenario(dsn: str, hour0: datetime) -> dict[str, Any]:
    """Write events and counts, and read them back the way the review UI and exports do."""
    result = await migrate(store(dsn, timescaledb="auto"))
    out: dict[str, Any] = {"timescaledb": result.timescaledb}
    c = await connect(store(dsn))
    try:
        # 2,500 events in one COPY, then a batch of redeliveries, new events and dead letters.
        first = [
            count_event(machine=f"m{i % 25}", ts=hour0 + timedelta(seconds=i), seq=i)
            for i in range(2500)
        ]
        new = count_event(machine="m1", ts=hour0, seq=9000, order=None)
        second = [*first[:3], new, new]  # redeliveries, and one event twice in the batch
        dead = [
            DeadLetter(
                topic="mes/v1/bad", payload=b"\x00\xff{", error="not JSON", received_at=hour0
            )
        ]
        out["inserted"] = [
            await write_batch(c, [received(e) for e in first], []),
            await write_batch(c, [received(e) for e in second], dead),
        ]
        out["events"] = await c.fetchval("SELECT count(*) FROM events")
        out["per_machine"] = [
            tuple(r)
            for r in await c.fetch(
                "SELECT machine, count(*), min(ts), max(ts) FROM events"
                " WHERE site = 's1' AND area = 'a1' AND line = 'l1' AND ts >= $1"
                " GROUP BY machine ORDER BY machine",
                hour0,
            )
        ]
        out["dead_letters"] = [
            (r["topic"], bytes(r["payload"]))
            for r in await c.fetch("SELECT topic, payload FROM dead_letters")
        ]

        rows = [
            CountRow("m1", "o-1", hour0 + timedelta(minutes=5), 10, 1),
            CountRow("m1", "o-1", hour0 + timedelta(minutes=59, seconds=59), 7, 0),
            CountRow("m1", "o-1", hour0 + timedelta(hours=1), 3, 2),
            CountRow("m1", None, hour0 + timedelta(hours=1, minutes=30), 4, 0),
            CountRow("m2", "o-2", hour0 + timedelta(hours=2, minutes=1), 20, 3),
        ]
        for r in rows:
            await c.execute(INSERT_COUNT, *r.values())
        out["hourly_realtime"] = [tuple(r) for r in await c.fetch(HOURLY)]
        await refresh(c, result.timescaledb)
        out["hourly_materialized"] = [tuple(r) for r in await c.fetch(HOURLY)]

        # Late rows into an hour already materialized, and a new hour.
        late = [
            CountRow("m1", "o-1", hour0 + timedelta(minutes=10), 1, 1),
            CountRow("m2", "o-2", hour0 + timedelta(hours=3), 2, 0),
        ]
        for r in late:
            await c.execute(INSERT_COUNT, *r.values())
        await refresh(c, result.timescaledb)
        out["hourly_after_late_rows"] = [tuple(r) for r in await c.fetch(HOURLY)]
        # The recorder's path also filled `counts` from the count events written above.
        recorded = [
            CountRow(e.machine, e.order, e.data.start, e.data.good, e.data.reject)
            for e in [*first, new]
            if isinstance(e.data, CountData)
        ]
        out["expected_before"] = expected_hourly(recorded + rows)
        out["expected_after"] = expected_hourly(recorded + rows + late)
    finally:
        await c.close()
    return out


async def test_the_same_queries_give_the_same_results_on_both_flavours(
    pg_dsn: str, timescale_dsn: str
) -> None:
    hour0 = (datetime.now(UTC) - timedelta(hours=6)).replace(minute=0, second=0, microsecond=0)
    plain = await scenario(pg_dsn, hour0)
    timescale = await scenario(timescale_dsn, hour0)

    assert plain.pop("timescaledb") is False
    assert timescale.pop("timescaledb") is True
    assert plain["inserted"] == [2500, 1]
    assert plain["events"] == 2501
    assert plain["dead_letters"] == [("mes/v1/bad", b"\x00\xff{")]
    assert len(plain["per_machine"]) == 25
    assert plain["hourly_realtime"] == plain["expected_before"]
    assert plain["hourly_materialized"] == plain["expected_before"]
    assert plain["hourly_after_late_rows"] == plain["expected_after"]
    assert timescale == plain
