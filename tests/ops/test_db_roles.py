"""deploy/postgres/roles.sql and the grants of `mesgw db migrate`, in the documented order,
on a database of any name: the recorder role stores every event type (and dead letters and
retention), the reader role reads everything and writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr
from test_contract import sample_event

from gateway.config import StoreSection
from gateway.events import EventType
from gateway.store import DeadLetter, Received, migrate, prune, write_batch

pytestmark = pytest.mark.integration

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "roles.sql"
KINDS: tuple[EventType, ...] = (
    "shift.started", "order.started", "state", "count", "count.held",
    "downtime.started", "downtime.updated", "downtime.ended", "order.ended",
)  # fmt: skip


def as_role(dsn: str, role: str) -> str:
    scheme, _, rest = dsn.partition("://")
    return f"{scheme}://{role}@{rest.partition('@')[2]}"


async def test_documented_order_gives_each_role_what_it_needs(pg_dsn: str) -> None:
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(ROLES_SQL.read_text())  # idempotent: other runs made them too
        name = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'ALTER DATABASE "{name}" OWNER TO mesgw_owner')  # createdb -O
    finally:
        await admin.close()

    owner = StoreSection(dsn=SecretStr(as_role(pg_dsn, "mesgw_owner")), timescaledb="off")
    result = await migrate(owner)
    assert result.applied  # the owner could create the whole schema
    assert (await migrate(owner)).applied == []  # and grants again without complaint

    events = []
    for seq, kind in enumerate(KINDS, start=1):
        e = sample_event(kind).model_copy(  # type: ignore[attr-defined]
            update={"seq": seq, "site": "s1", "area": "a1", "line": "l1", "machine": "m1"}
        )
        events.append(Received(e, e.to_json(), f"mes/v1/s1/a1/l1/m1/{kind.partition('.')[0]}"))
    dead = DeadLetter("mes/v1/s1/a1/l1/m1/count", b"not json", "invalid", datetime.now(UTC))

    rec = await asyncpg.connect(as_role(pg_dsn, "mesgw_recorder"))
    try:
        for item in events:  # one transaction each, in the order a gateway sends them
            assert await write_batch(rec, [item], []) == 1
        assert await write_batch(rec, events, [dead]) == 0  # duplicates dropped, letter kept
        old = StoreSection(dsn=SecretStr(pg_dsn), events_retention_days=1)
        # The recorder may not rewrite history.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await rec.execute("UPDATE events SET ts = ts - interval '1 day'")
        assert await prune(rec, old) == len(events)  # sample events are from 2026-01-01
    finally:
        await rec.close()

    reader = await asyncpg.connect(as_role(pg_dsn, "mesgw_reader"))
    try:
        tables = await reader.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        for row in tables:
            await reader.fetch(f'SELECT * FROM "{row["tablename"]}" LIMIT 1')
        counts = {
            t: await reader.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("counts", "held_counts", "downtimes", "work_orders", "shifts",
                      "state_intervals", "dead_letters")
        }  # fmt: skip
        assert all(n >= 1 for n in counts.values()), counts
        since = datetime(2025, 12, 31, tzinfo=UTC)
        rows = await reader.fetch(
            "SELECT * FROM oee_by_order($1, $2, NULL)", since, since + timedelta(days=3)
        )
        assert rows
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute("DELETE FROM counts")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute(
                "INSERT INTO dead_letters (topic, payload, error) VALUES ('t', 'x', 'e')"
            )
    finally:
        await reader.close()
