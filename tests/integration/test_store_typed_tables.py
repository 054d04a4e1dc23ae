"""The typed tables the recorder derives from events: rows, upserts, idempotence, any order.

One morning on two machines (a shift, three orders, state changes, two downtimes, counts) is
written in order, shuffled with duplicates, through the real recorder over MQTT, and on the
TimescaleDB flavour; every way gives the same tables.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import store_support
from pydantic import SecretStr
from store_support import SHIFT, at, migrate_module

from gateway.config import MqttSection, RecorderSection, Settings, StoreSection
from gateway.events import (
    CountData,
    DowntimeData,
    Event,
    OrderData,
    ShiftBreak,
    ShiftData,
    StateBucket,
    StateData,
    publications,
)
from gateway.recorder import Recorder
from gateway.store import connect, migrate, write_batch
from gateway.store.migrate import load_migrations
from gateway.testing import Broker, received

pytestmark = pytest.mark.integration


class Plant(store_support.Plant):
    """The base plant with the typed-table tests' event helpers."""

    def state(
        self, since: datetime, bucket: StateBucket, code: int, order: str, machine: str = "m1"
    ) -> Event:
        data = StateData(bucket=bucket, code=code, since=since)
        return self.emit("state", since, data, machine=machine, order=order)

    def count(
        self,
        start: datetime,
        end: datetime,
        good: int,
        reject: int,
        order: str,
        ideal: float | None,
        machine: str = "m1",
        quality: str = "ok",
    ) -> Event:
        data = CountData(
            good=good,
            reject=reject,
            total=good + reject,
            start=start,
            end=end,
            ideal_cycle_time_s=ideal,
            quality=quality,  # type: ignore[arg-type]
        )
        return self.emit("count", end, data, machine=machine, order=order)


def shift_data() -> ShiftData:
    return ShiftData(
        shift_id=SHIFT,
        calendar="cal-a",
        name="early",
        start=at(6),
        end=at(14),
        breaks=[ShiftBreak(start=at(10), end=at(10, 30))],
    )


def order_data(order_id: str, status: str, **kw: Any) -> OrderData:
    return OrderData(order_id=order_id, status=status, origin="mqtt", **kw)  # type: ignore[arg-type]


def morning() -> list[Event]:
    """The morning's events in the order the gateways emitted them."""
    p = Plant()
    p.emit("shift.started", at(6), shift_data())
    p.emit("shift.started", at(6), shift_data(), machine="m2")
    a = {"product": "p-1", "quantity": 100, "ideal_cycle_time_s": 2.0}
    p.emit("order.started", at(6), order_data("o-a", "running", **a), order="o-a")
    p.state(at(6), "running", 6, "o-a")
    p.emit("order.started", at(6, 30), order_data("o-c", "running"), machine="m2", order="o-c")
    p.state(at(6, 30), "running", 6, "o-c", machine="m2")
    p.count(at(6), at(7), 1470, 30, "o-a", 2.0)
    p.count(at(6, 30), at(7), 10, 0, "o-c", None, machine="m2", quality="gap")
    p.state(at(7), "down", 17, "o-a")
    d1 = DowntimeData(downtime_id="m1-d1", start=at(7))
    p.emit("downtime.started", at(7), d1, order="o-a")
    reason = {"reason_code": "17", "reason_text": "jam", "category": "material"}
    reason["loss"] = "availability"  # the events before it carry none (an older gateway)
    p.emit("downtime.updated", at(7, 2), d1.model_copy(update=reason), order="o-a")
    ended = {**reason, "end": at(7, 10), "duration_s": 600.0, "micro_stop": False}
    p.emit("downtime.ended", at(7, 10), d1.model_copy(update=ended), order="o-a")
    p.state(at(7, 10), "running", 6, "o-a")
    d2 = DowntimeData(downtime_id="m1-d2", start=at(7, 30), loss="availability")
    p.state(at(7, 30), "down", 17, "o-a")
    p.emit("downtime.started", at(7, 30), d2, order="o-a")
    # A micro-stop's loss (rules.micro_stop_loss) comes with its end.
    micro = {"end": at(7, 31), "duration_s": 60.0, "micro_stop": True, "loss": "performance"}
    p.emit("downtime.ended", at(7, 31), d2.model_copy(update=micro), order="o-a")
    p.state(at(7, 31), "running", 6, "o-a")
    p.emit("order.ended", at(7, 30), order_data("o-c", "completed"), machine="m2", order="o-c")
    p.count(at(7, 10), at(8), 700, 10, "o-a", 2.0)
    p.emit("order.ended", at(8), order_data("o-a", "completed", **a), order="o-a")
    b = {"product": "p-2", "quantity": 50, "ideal_cycle_time_s": 3.0}
    p.emit("order.started", at(8), order_data("o-b", "running", **b), order="o-b")
    p.state(at(8), "running", 6, "o-b")
    p.count(at(8), at(9), 1000, 0, "o-b", 3.0)
    return p.events


def store(dsn: str) -> StoreSection:
    return StoreSection(dsn=SecretStr(dsn), connect_timeout_s=5)


SNAPSHOT = {
    "counts": "SELECT * FROM counts ORDER BY machine, interval_start",
    "state_intervals": "SELECT * FROM state_intervals ORDER BY machine, start_ts",
    "downtimes": "SELECT * FROM downtimes ORDER BY downtime_id",
    "work_orders": "SELECT * FROM work_orders ORDER BY order_id",
    "shifts": "SELECT * FROM shifts ORDER BY shift_id",
    "events": "SELECT event_id, type FROM events ORDER BY event_id",
}
CLEAR = "TRUNCATE events, counts, state_intervals, downtimes, work_orders, shifts, exports"
# Bookkeeping that legitimately differs between runs.
VOLATILE = {"updated_at", "created_at"}


async def snapshot(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table, sql in SNAPSHOT.items():
        rows = await conn.fetch(sql)
        out[table] = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
    return out


def pick(rows: list[dict[str, Any]], names: str) -> list[tuple[Any, ...]]:
    return [tuple(r[n] for n in names.split()) for r in rows]


async def write_in_batches(conn: asyncpg.Connection, batches: list[list[Event]]) -> None:
    for batch in batches:
        await write_batch(conn, [received(e) for e in batch], [])


def shuffled_with_duplicates(events: list[Event], rng: random.Random) -> list[list[Event]]:
    """The events in a random order, a third of them twice, cut into batches of 1 to 6."""
    deliveries = events + rng.sample(events, len(events) // 3)
    rng.shuffle(deliveries)
    batches = []
    while deliveries:
        size = rng.randint(1, 6)
        batches.append(deliveries[:size])
        deliveries = deliveries[size:]
    return batches


@pytest.fixture
async def conn(pg_dsn: str) -> Any:
    await migrate(store(pg_dsn))
    c = await connect(store(pg_dsn))
    try:
        yield c
    finally:
        await c.close()


# --- the rows ------------------------------------------------------------------------------


async def test_a_morning_of_events_fills_every_typed_table(conn: asyncpg.Connection) -> None:
    events = morning()
    await write_in_batches(conn, [[e] for e in events])  # streamed, one event per batch
    s = await snapshot(conn)
    by_id = {e.event_id: e for e in events}

    assert len(s["events"]) == len(events)
    assert {r["type"] for r in s["events"]} >= {"shift.started", "downtime.updated"}

    fields = "machine order_id shift_id interval_start interval_end good reject total quality"
    counts = pick(s["counts"], f"{fields} ideal_cycle_time_s")
    assert counts == [
        ("m1", "o-a", SHIFT, at(6), at(7), 1470, 30, 1500, "ok", 2.0),
        ("m1", "o-a", SHIFT, at(7, 10), at(8), 700, 10, 710, "ok", 2.0),
        ("m1", "o-b", SHIFT, at(8), at(9), 1000, 0, 1000, "ok", 3.0),
        ("m2", "o-c", SHIFT, at(6, 30), at(7), 10, 0, 10, "gap", None),
    ]
    assert all(by_id[r["event_id"]].type == "count" for r in s["counts"])

    intervals = pick(s["state_intervals"], "machine start_ts end_ts bucket code order_id")
    assert intervals == [
        ("m1", at(6), at(7), "running", "6", "o-a"),
        ("m1", at(7), at(7, 10), "down", "17", "o-a"),
        ("m1", at(7, 10), at(7, 30), "running", "6", "o-a"),
        ("m1", at(7, 30), at(7, 31), "down", "17", "o-a"),
        ("m1", at(7, 31), at(8), "running", "6", "o-a"),
        ("m1", at(8), None, "running", "6", "o-b"),  # still open
        ("m2", at(6, 30), None, "running", "6", "o-c"),
    ]
    assert {r["shift_id"] for r in s["state_intervals"]} == {SHIFT}
    assert all(by_id[r["event_id"]].type == "state" for r in s["state_intervals"])

    fields = "downtime_id machine start_ts end_ts duration_s reason_code reason_text category"
    tail = (SHIFT, False, "auto")  # shift, planned, source
    assert pick(s["downtimes"], f"{fields} micro_stop order_id shift_id planned source") == [
        ("m1-d1", "m1", at(7), at(7, 10), 600.0, "17", "jam", "material", False, "o-a", *tail),
        ("m1-d2", "m1", at(7, 30), at(7, 31), 60.0, None, None, None, True, "o-a", *tail),
    ]
    # The loss of the newest event: a micro-stop's comes with its end.
    assert pick(s["downtimes"], "downtime_id loss") == [
        ("m1-d1", "availability"),
        ("m1-d2", "performance"),
    ]

    fields = "order_id machine product quantity ideal_cycle_time_s status origin"
    orders = pick(s["work_orders"], f"{fields} started_at ended_at")
    assert orders == [
        ("o-a", "m1", "p-1", 100, 2.0, "completed", "mqtt", at(6), at(8)),
        ("o-b", "m1", "p-2", 50, 3.0, "running", "mqtt", at(8), None),
        ("o-c", "m2", None, None, None, "completed", "mqtt", at(6, 30), at(7, 30)),
    ]

    [shift] = s["shifts"]
    assert (shift["shift_id"], shift["calendar"], shift["name"]) == (SHIFT, "cal-a", "early")
    assert (shift["start_ts"], shift["end_ts"]) == (at(6), at(14))
    breaks = json.loads(shift["breaks"])
    assert [
        (datetime.fromisoformat(b["start"]), datetime.fromisoformat(b["end"])) for b in breaks
    ] == [(at(10), at(10, 30))]


async def test_redelivered_and_reordered_events_give_the_same_tables(
    conn: asyncpg.Connection,
) -> None:
    events = morning()
    await write_in_batches(conn, [events])
    expected = await snapshot(conn)
    for seed in range(8):
        await conn.execute(CLEAR)
        await write_in_batches(conn, shuffled_with_duplicates(events, random.Random(seed)))
        assert await snapshot(conn) == expected, f"seed {seed}"
    # Everything once more on top: nothing changes, not even a bookkeeping column.
    before = await conn.fetch("SELECT downtime_id, updated_at FROM downtimes ORDER BY 1")
    await write_in_batches(conn, [events])
    assert await snapshot(conn) == expected
    assert await conn.fetch("SELECT downtime_id, updated_at FROM downtimes ORDER BY 1") == before


# --- downtimes -----------------------------------------------------------------------------


async def test_a_downtime_is_upserted_as_it_starts_gets_a_reason_and_ends(
    conn: asyncpg.Connection,
) -> None:
    p = Plant()
    d = DowntimeData(downtime_id="m1-d9", start=at(9), category="unplanned", loss="availability")
    started = p.emit("downtime.started", at(9), d, order="o-a")
    # A planned reason: the loss turns planned with it.
    planned = {"planned": True, "loss": "planned"}
    recoded = d.model_copy(update={"reason_code": "41", "reason_text": "tool change", **planned})
    updated = p.emit("downtime.updated", at(9, 5), recoded, order="o-a")
    ended_data = recoded.model_copy(
        update={"end": at(9, 20), "duration_s": 1200.0, "micro_stop": False}
    )
    ended = p.emit("downtime.ended", at(9, 20), ended_data, order="o-a")
    fields = "start_ts, end_ts, duration_s, reason_code, reason_text, category, micro_stop"
    fields += ", planned, loss"

    async def row() -> tuple[Any, ...]:
        return tuple(await conn.fetchrow(f"SELECT {fields} FROM downtimes"))

    await write_in_batches(conn, [[started]])
    unassigned = (False, "availability")
    assert await row() == (at(9), None, None, None, None, "unplanned", None, *unassigned)
    await write_in_batches(conn, [[updated]])
    recoded_row = (at(9), None, None, "41", "tool change", "unplanned", None, True, "planned")
    assert await row() == recoded_row
    await write_in_batches(conn, [[ended]])
    final = (at(9), at(9, 20), 1200.0, "41", "tool change", "unplanned", False, True, "planned")
    assert await row() == final
    # Late copies of the earlier events neither reopen it nor take its reason or loss away.
    await write_in_batches(conn, [[started], [updated, started]])
    assert await row() == final
    assert await conn.fetchval("SELECT count(*) FROM downtimes") == 1


async def test_an_ended_event_arriving_first_is_kept_when_the_start_follows(
    conn: asyncpg.Connection,
) -> None:
    p = Plant()
    d = DowntimeData(downtime_id="m1-d7", start=at(9))
    started = p.emit("downtime.started", at(9), d)
    ended = p.emit(
        "downtime.ended",
        at(9, 1),
        d.model_copy(update={"end": at(9, 1), "duration_s": 60.0, "micro_stop": True}),
    )
    await write_in_batches(conn, [[ended], [started]])
    row = await conn.fetchrow("SELECT end_ts, duration_s, micro_stop, event_id FROM downtimes")
    assert tuple(row) == (at(9, 1), 60.0, True, ended.event_id)


# --- work orders ---------------------------------------------------------------------------


async def test_work_order_lifecycle_keeps_one_running_order_per_machine(
    conn: asyncpg.Connection,
) -> None:
    # A schedule import knows the order's operation on m1 before it starts there.
    await conn.execute(
        "INSERT INTO work_orders (order_id, site, area, line, machine, product, quantity,"
        " ideal_cycle_time_s, origin) VALUES ('o-1', 's1', 'a1', 'l1', 'm1', 'bolt', 500, 1.5,"
        " 'schedule')"
    )
    p = Plant()
    start_1 = p.emit("order.started", at(6), order_data("o-1", "running"), order="o-1")
    end_1 = p.emit("order.ended", at(7), order_data("o-1", "completed"), order="o-1")
    start_2 = p.emit("order.started", at(7), order_data("o-2", "running"), order="o-2")
    end_2 = p.emit("order.ended", at(8), order_data("o-2", "completed"), order="o-2")
    fields = (
        "order_id, machine, product, quantity, ideal_cycle_time_s, status, started_at, ended_at"
    )

    async def orders() -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await conn.fetch(f"SELECT {fields} FROM work_orders ORDER BY 1")]

    await write_in_batches(conn, [[start_1]])
    assert await orders() == [("o-1", "m1", "bolt", 500, 1.5, "running", at(6), None)]
    # o-1's end is late: o-2 starting on the same machine completes it, no constraint trips.
    await write_in_batches(conn, [[start_2]])
    assert await orders() == [
        ("o-1", "m1", "bolt", 500, 1.5, "completed", at(6), None),
        ("o-2", "m1", None, None, None, "running", at(7), None),
    ]
    await write_in_batches(conn, [[end_1]])
    assert await orders() == [
        ("o-1", "m1", "bolt", 500, 1.5, "completed", at(6), at(7)),
        ("o-2", "m1", None, None, None, "running", at(7), None),
    ]
    await write_in_batches(conn, [[end_2], [start_2]])  # and a redelivered start
    assert await orders() == [
        ("o-1", "m1", "bolt", 500, 1.5, "completed", at(6), at(7)),
        ("o-2", "m1", None, None, None, "completed", at(7), at(8)),
    ]

    # A clerk's confirmation is never undone by a late event.
    await conn.execute("UPDATE work_orders SET status = 'confirmed' WHERE order_id = 'o-1'")
    restart = p.emit("order.started", at(9), order_data("o-1", "running"), order="o-1")
    await write_in_batches(conn, [[start_1, end_1, restart]])
    assert await conn.fetchval("SELECT status FROM work_orders WHERE order_id = 'o-1'") == (
        "confirmed"
    )


async def test_an_order_resumed_after_another_runs_again(conn: asyncpg.Connection) -> None:
    p = Plant()
    events = [
        p.emit("order.started", at(6), order_data("o-1", "running"), order="o-1"),
        p.emit("order.ended", at(7), order_data("o-1", "completed"), order="o-1"),
        p.emit("order.started", at(7), order_data("o-2", "running"), order="o-2"),
        p.emit("order.ended", at(8), order_data("o-2", "completed"), order="o-2"),
        p.emit("order.started", at(8), order_data("o-1", "running"), order="o-1"),
    ]
    for batches in ([events], [[e] for e in reversed(events)]):
        await conn.execute(CLEAR)
        await write_in_batches(conn, batches)
        rows = await conn.fetch(
            "SELECT order_id, status, started_at, ended_at FROM work_orders ORDER BY 1"
        )
        assert [tuple(r) for r in rows] == [
            ("o-1", "running", at(6), at(7)),
            ("o-2", "completed", at(7), at(8)),
        ]


async def test_one_order_on_two_machines_at_once_has_a_row_per_machine(
    conn: asyncpg.Connection,
) -> None:
    # The line runs o-1 on m1 and m2 together (one operation each); m1 finishes first and
    # starts o-2, while m2 still runs o-1.
    p = Plant()
    details = {"product": "bolt", "quantity": 500, "ideal_cycle_time_s": 1.5}
    events = [
        p.emit("order.started", at(6), order_data("o-1", "running", **details), order="o-1"),
        p.emit(
            "order.started",
            at(6, 5),
            order_data("o-1", "running", **details),
            machine="m2",
            order="o-1",
        ),
        p.emit("order.ended", at(7), order_data("o-1", "completed"), order="o-1"),
        p.emit("order.started", at(7), order_data("o-2", "running"), order="o-2"),
    ]
    fields = "order_id, machine, product, status, started_at, ended_at"
    expected = [
        ("o-1", "m1", "bolt", "completed", at(6), at(7)),
        ("o-1", "m2", "bolt", "running", at(6, 5), None),
        ("o-2", "m1", None, "running", at(7), None),
    ]
    rng = random.Random(5)
    orders = [
        [events],
        [[e] for e in events],
        [[e] for e in reversed(events)],
        *(shuffled_with_duplicates(events, rng) for _ in range(4)),
    ]
    for i, batches in enumerate(orders):
        await conn.execute(CLEAR)
        await write_in_batches(conn, batches)
        rows = await conn.fetch(f"SELECT {fields} FROM work_orders ORDER BY 1, 2")
        assert [tuple(r) for r in rows] == expected, f"delivery {i}"

    # m2 ends o-1 too: its row alone changes.
    await write_in_batches(
        conn,
        [[p.emit("order.ended", at(8), order_data("o-1", "completed"), machine="m2")]],
    )
    rows = await conn.fetch(f"SELECT {fields} FROM work_orders ORDER BY 1, 2")
    assert [tuple(r) for r in rows] == [
        ("o-1", "m1", "bolt", "completed", at(6), at(7)),
        ("o-1", "m2", "bolt", "completed", at(6, 5), at(8)),
        ("o-2", "m1", None, "running", at(7), None),
    ]

    # A clerk confirms o-1 on m1: a late start there does not undo it, nor does it touch m2.
    await conn.execute(
        "UPDATE work_orders SET status = 'confirmed' WHERE order_id = 'o-1' AND machine = 'm1'"
    )
    late = p.emit("order.started", at(9), order_data("o-1", "running"), order="o-1")
    resumed = p.emit("order.started", at(9), order_data("o-1", "running"), machine="m2")
    await write_in_batches(conn, [[late, resumed]])
    rows = await conn.fetch("SELECT order_id, machine, status FROM work_orders ORDER BY 1, 2")
    assert [tuple(r) for r in rows] == [
        ("o-1", "m1", "confirmed"),
        ("o-1", "m2", "running"),
        ("o-2", "m1", "completed"),  # o-1's start is m1's newest order event
    ]


async def test_details_an_order_event_leaves_out_come_from_its_newest_event_that_has_them(
    conn: asyncpg.Connection,
) -> None:
    p = Plant()
    details = {"product": "bolt", "quantity": 500, "ideal_cycle_time_s": 1.5}
    start = p.emit("order.started", at(6), order_data("o-1", "running", **details))
    end = p.emit("order.ended", at(7), order_data("o-1", "completed"))
    for i, batches in enumerate(([[start, end]], [[start], [end]], [[end], [start]])):
        await conn.execute(CLEAR)
        await write_in_batches(conn, batches)
        row = await conn.fetchrow("SELECT product, quantity, ideal_cycle_time_s FROM work_orders")
        assert tuple(row) == ("bolt", 500, 1.5), f"delivery {i}"


async def test_migrating_a_store_keyed_by_order_alone_rebuilds_the_lost_operations(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store at 0005 as the recorder left it: o-1 ran on m1 and m2 but kept one row (m1's,
    # whose end came last), o-3 ran on m3 and m4 and was confirmed by the clerk on its one
    # row (m3's), and an order was planned by hand without a machine.
    older = tmp_path / "migrations"
    shutil.copytree(Path(str(migrate_module.__file__)).parent / "migrations", older)
    for later in older.glob("*.sql"):
        if later.name >= "0006":
            later.unlink()
    monkeypatch.setattr(migrate_module, "MIGRATIONS_DIR", older)
    assert (await migrate(store(pg_dsn))).applied[-1] == "0005_oee.sql"
    monkeypatch.undo()

    p = Plant()
    bolt = {"product": "bolt", "quantity": 500}
    p.emit("order.started", at(6), order_data("o-1", "running", **bolt), order="o-1")
    p.emit("order.started", at(6, 5), order_data("o-1", "running"), machine="m2")
    end_1 = p.emit("order.ended", at(7), order_data("o-1", "completed"), order="o-1")
    start_2 = p.emit("order.started", at(7), order_data("o-2", "running"), order="o-2")
    p.emit("order.started", at(6), order_data("o-3", "running"), machine="m4")
    p.emit("order.ended", at(6, 30), order_data("o-3", "completed"), machine="m4")
    p.emit("order.started", at(6), order_data("o-3", "running"), machine="m3")
    end_3 = p.emit("order.ended", at(6, 40), order_data("o-3", "completed"), machine="m3")

    def last(e: Event) -> tuple[Any, ...]:
        return (e.ts, e.type, e.event_id)

    c = await connect(store(pg_dsn))
    try:
        await c.executemany(
            "INSERT INTO events (event_id, ts, type, gateway, seq, site, area, line, machine,"
            " order_id, shift_id, data, topic) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
            " $11, $12, $13)",
            [
                (
                    e.event_id,
                    e.ts,
                    e.type,
                    e.gateway,
                    e.seq,
                    e.site,
                    e.area,
                    e.line,
                    e.machine,
                    e.order,
                    e.shift,
                    e.data.model_dump_json(),
                    received(e).topic,
                )
                for e in p.events
            ],
        )
        await c.executemany(
            "INSERT INTO work_orders (order_id, site, area, line, machine, product, quantity,"
            " status, origin, started_at, ended_at, last_event_ts, last_event_type,"
            " last_event_id, confirmed_at, confirmed_by) VALUES ($1, 's1', 'a1', 'l1', $2, $3,"
            " $4, $5, 'mqtt', $6, $7, $8, $9, $10, $11, $12)",
            [
                ("o-1", "m1", "bolt", 500, "completed", at(6), at(7), *last(end_1), None, None),
                ("o-2", "m1", None, None, "running", at(7), None, *last(start_2), None, None),
                ("o-3", "m3", None, None, "confirmed", at(6), at(6, 40), *last(end_3), at(9), "c1"),
            ],
        )
        await c.execute(
            "INSERT INTO work_orders (order_id, product, quantity, origin)"
            " VALUES ('o-9', 'nut', 20, 'schedule')"
        )
        await c.execute(
            "INSERT INTO exports (order_id, created_by, format, figures, sha256)"
            " VALUES ('o-3', 'clerk1', 'csv', '{}', repeat('0', 64))"
        )

        assert (await migrate(store(pg_dsn))).applied == [
            "0006_work_orders_per_machine.sql",
            "0007_downtime_loss.sql",
            *(m.file for m in load_migrations("plain") if m.version > "0007"),
        ]
        fields = "order_id, machine, product, quantity, status, started_at, ended_at"
        rows = await c.fetch(f"SELECT {fields}, confirmed_by FROM work_orders ORDER BY 1, 2")
        assert [tuple(r) for r in rows] == [
            ("o-1", "m1", "bolt", 500, "completed", at(6), at(7), None),
            ("o-1", "m2", "bolt", 500, "running", at(6, 5), None, None),
            ("o-2", "m1", None, None, "running", at(7), None, None),
            ("o-3", "m3", None, None, "confirmed", at(6), at(6, 40), "c1"),
            ("o-3", "m4", None, None, "confirmed", at(6), at(6, 30), "c1"),
        ]
        planned = await c.fetch("SELECT order_id, product, quantity, origin FROM planned_orders")
        assert [tuple(r) for r in planned] == [("o-9", "nut", 20, "schedule")]
        assert await c.fetchval("SELECT count(*) FROM exports") == 1
        pk = await c.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'work_orders'::regclass AND contype = 'p'"
        )
        assert pk == "PRIMARY KEY (order_id, site, area, line, machine)"

        # The recorder carries on per machine: m2 ends o-1, m1's row is untouched.
        await write_batch(
            c,
            [received(p.emit("order.ended", at(8), order_data("o-1", "completed"), machine="m2"))],
            [],
        )
        rows = await c.fetch(f"SELECT {fields} FROM work_orders WHERE order_id = 'o-1'")
        assert sorted(tuple(r) for r in rows) == [
            ("o-1", "m1", "bolt", 500, "completed", at(6), at(7)),
            ("o-1", "m2", "bolt", 500, "completed", at(6, 5), at(8)),
        ]
    finally:
        await c.close()


# --- state intervals and shifts ------------------------------------------------------------


async def test_two_state_events_for_one_instant_keep_the_one_emitted_last(
    conn: asyncpg.Connection,
) -> None:
    p = Plant()
    first = p.state(at(10), "running", 6, "o-a")
    second = p.state(at(10), "planned_stop", 6, "o-b")  # re-emitted at a boundary
    after = p.state(at(10, 30), "running", 6, "o-b")
    for batches in ([[first], [second], [after]], [[after, second], [first]], [[second, first]]):
        await conn.execute(CLEAR)
        await write_in_batches(conn, batches)
        rows = await conn.fetch(
            "SELECT start_ts, end_ts, bucket, order_id, event_id FROM state_intervals"
            " ORDER BY start_ts"
        )
        expected_end = at(10, 30) if len(rows) == 2 else None
        assert tuple(rows[0]) == (at(10), expected_end, "planned_stop", "o-b", second.event_id)


async def test_a_newer_shift_event_replaces_the_shift_and_its_breaks(
    conn: asyncpg.Connection,
) -> None:
    p = Plant()
    old = p.emit("shift.started", at(6), shift_data())
    moved = shift_data().model_copy(update={"name": "early (long)", "end": at(15), "breaks": []})
    new = p.emit("shift.started", at(6), moved, machine="m2")
    await write_in_batches(conn, [[new], [old]])
    row = await conn.fetchrow("SELECT name, end_ts, breaks, event_id FROM shifts")
    assert (row["name"], row["end_ts"], json.loads(row["breaks"])) == ("early (long)", at(15), [])
    assert row["event_id"] == new.event_id


# --- recorders sharing a subscription ------------------------------------------------------


async def test_two_recorders_writing_one_machine_at_once_agree(
    pg_dsn: str, conn: asyncpg.Connection
) -> None:
    # A share group splits one machine's events between recorders that commit concurrently:
    # interval ends and the running order depend on rows the other may be writing.
    p = Plant()
    buckets: list[StateBucket] = ["running", "down", "idle"]
    for i in range(120):
        order = f"o-{i // 4}"
        if i % 4 == 0:
            if i:
                p.emit("order.ended", at(6, i), order_data(f"o-{i // 4 - 1}", "completed"))
            p.emit("order.started", at(6, i), order_data(order, "running"), order=order)
        p.state(at(6, i), buckets[i % 3], i, order)
    events = p.events
    other = await connect(store(pg_dsn))
    try:
        for seed in range(3):
            await conn.execute(CLEAR)
            rng = random.Random(seed)
            shuffled = rng.sample(events, len(events))
            halves = [shuffled[::2], shuffled[1::2]]
            await asyncio.gather(
                *(
                    write_in_batches(c, [half[i : i + 3] for i in range(0, len(half), 3)])
                    for c, half in zip((conn, other), halves, strict=True)
                )
            )
            ends = await conn.fetch("SELECT start_ts, end_ts FROM state_intervals ORDER BY 1")
            starts = [r["start_ts"] for r in ends]
            assert starts == [at(6, i) for i in range(120)]
            assert [r["end_ts"] for r in ends] == [*starts[1:], None], f"seed {seed}"
            running = await conn.fetch("SELECT order_id FROM work_orders WHERE status = 'running'")
            assert [r["order_id"] for r in running] == ["o-29"], f"seed {seed}"
            assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
    finally:
        await other.close()


# --- through the recorder, and on TimescaleDB ----------------------------------------------


async def test_the_recorder_fills_the_typed_tables_from_mqtt(
    broker: Broker, prefix: str, pg_dsn: str, conn: asyncpg.Connection
) -> None:
    events = morning()
    await write_in_batches(conn, [events])
    expected = await snapshot(conn)
    await conn.execute(CLEAR)

    settings = Settings(
        mqtt=MqttSection(host=broker.host, port=broker.port, prefix=prefix),
        store=store(pg_dsn),
        recorder=RecorderSection(client_id="typed-rec", batch_wait_ms=5),
    )
    rng = random.Random(7)
    deliveries = [p for e in events for p in publications(e, prefix) if p.payload]
    deliveries += rng.sample(deliveries, 10)  # QoS 1 duplicates
    rng.shuffle(deliveries)
    recorder = Recorder(settings)
    task = asyncio.create_task(recorder.run(), name="typed-recorder")
    try:
        assert await recorder.wait_subscribed(10)
        await asyncio.to_thread(publish_all, broker, [(p.topic, p.payload) for p in deliveries])
        await until_stored(conn, len(events))
    finally:
        await recorder.stop()
        await task
    assert recorder.stats.dead_letters == 0
    assert await snapshot(conn) == expected


async def test_an_event_the_typed_tables_refuse_is_a_dead_letter_and_the_rest_is_stored(
    broker: Broker, prefix: str, pg_dsn: str, conn: asyncpg.Connection
) -> None:
    p = Plant()
    fine = p.count(at(6), at(7), 100, 0, "o-a", 2.0)
    # Valid envelopes the tables cannot hold: a count interval ending before it starts, and
    # a downtime ending before its start.
    backwards = p.count(at(8), at(7), 5, 0, "o-a", 2.0)
    d = DowntimeData(downtime_id="m1-d5", start=at(9))
    bad_end = d.model_copy(update={"end": at(8), "duration_s": 0.0, "micro_stop": True})
    ended = p.emit("downtime.ended", at(9), bad_end)
    state = p.state(at(6), "running", 6, "o-a")
    settings = Settings(
        mqtt=MqttSection(host=broker.host, port=broker.port, prefix=prefix),
        store=store(pg_dsn),
        recorder=RecorderSection(client_id="typed-rec-bad", batch_wait_ms=50),
    )
    deliveries = [p for e in (fine, backwards, ended, state) for p in publications(e, prefix)]
    recorder = Recorder(settings)
    task = asyncio.create_task(recorder.run(), name="typed-recorder")
    try:
        assert await recorder.wait_subscribed(10)
        await asyncio.to_thread(publish_all, broker, [(d.topic, d.payload) for d in deliveries])
        await until_stored(conn, 2)
        await until(lambda: recorder.stats.dead_letters == 2)
    finally:
        await recorder.stop()
        await task
    letters = await conn.fetch("SELECT payload, error FROM dead_letters ORDER BY id")
    assert {bytes(r["payload"]) for r in letters} == {backwards.to_json(), ended.to_json()}
    assert all(r["error"].startswith("rejected by the store") for r in letters)
    assert await conn.fetchval("SELECT count(*) FROM counts") == 1
    assert await conn.fetchval("SELECT count(*) FROM state_intervals") == 1
    assert await conn.fetchval("SELECT count(*) FROM downtimes") == 0
    stored = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM events")}
    assert stored == {fine.event_id, state.event_id}


async def test_the_typed_tables_are_the_same_on_timescaledb(
    conn: asyncpg.Connection, timescale_dsn: str
) -> None:
    events = morning()
    batches = shuffled_with_duplicates(events, random.Random(3))
    await write_in_batches(conn, batches)
    expected = await snapshot(conn)

    assert (await migrate(store(timescale_dsn))).timescaledb
    ts = await connect(store(timescale_dsn))
    try:
        await write_in_batches(ts, batches)
        assert await snapshot(ts) == expected
    finally:
        await ts.close()


async def until(done: Callable[[], bool | Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = done()
        if result if isinstance(result, bool) else await result:
            return
        assert asyncio.get_running_loop().time() < deadline, "not done in time"
        await asyncio.sleep(0.05)


async def until_stored(conn: asyncpg.Connection, n: int) -> None:
    async def stored() -> bool:
        return bool(await conn.fetchval("SELECT count(*) FROM events") >= n)

    await until(stored)


def publish_all(broker: Broker, items: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 in this order; returns once the broker acknowledged everything."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in items]
        for info in infos:
            info.wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()
