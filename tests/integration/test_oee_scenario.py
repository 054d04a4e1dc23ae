"""OEE in SQL from stored rows: an eight-hour shift computed by hand, per shift, order and hour.

The scenario (machine m1, 2025-03-04, UTC), as the gateway's rules would emit it:

    05:00-06:00  not_scheduled  (before the shift)
    06:00-07:00  running        order o-a          count 1500 parts, 1470 good
    07:00-07:30  down           o-a  downtime d1 (30 min)
    07:30-08:00  running        o-a                count  800 parts,  790 good
    08:00-08:10  idle           o-a  (starved: a performance loss)
    08:10-10:00  running        o-a                count 2700 parts, 2640 good
    10:00-10:30  planned_stop   o-b  (the shift's break; o-b starts at 10:00)
    10:30-10:45  changeover     o-b  downtime d2 (15 min)
    10:45-12:00  running        o-b                count 2000 parts, 1980 good
    12:00:00-12:01:30 down      o-b  downtime d3, a micro-stop (90 s)
    12:01:30-14:00 running      o-b                count 3200 parts, 3170 good
    14:00-       not_scheduled  (after the shift; still open)

Ideal cycle time 2 s for every part. Shift 06:00-14:00 = 28,800 s with a 30-min break.
The downtimes carry no `loss`, as a gateway sent them before it recorded one (the rows a
store had before migration 0007): each is charged to availability unless a call overrides it.
Further scenarios (a planned cleaning stop, micro-stops recorded as performance loss, a store
migrated to 0007 with rows recorded before it) come with their tests below.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import asyncpg
import pytest
from pydantic import SecretStr
from store_support import DAY, SHIFT, Plant, at, migrate_module

from gateway.cli import main
from gateway.config import StoreSection
from gateway.events import (
    CountData,
    DowntimeData,
    Event,
    EventType,
    HeldCountData,
    OrderData,
    ShiftBreak,
    ShiftData,
    StateBucket,
    StateData,
)
from gateway.review.actions import decide_held
from gateway.review.users import Actor
from gateway.store import connect, migrate, write_batch
from gateway.testing import received

pytestmark = pytest.mark.integration

Loss = Literal["availability", "performance", "planned"]

WINDOW = (DAY + timedelta(hours=5), DAY + timedelta(hours=15))


class Line(Plant):
    """The OEE scenario's events: order passed positionally, as the scenario reads."""

    def __init__(self) -> None:
        super().__init__(gateway="gw")

    def emit(  # type: ignore[override]
        self,
        type_: EventType,
        ts: datetime,
        data: Any,
        order: str | None,
        shift: str | None = SHIFT,
        machine: str = "m1",
    ) -> Event:
        return super().emit(type_, ts, data, machine=machine, order=order, shift=shift)

    def state(
        self, since: datetime, bucket: StateBucket, order: str | None, machine: str = "m1"
    ) -> None:
        shift = SHIFT if bucket != "not_scheduled" else None
        data = StateData(bucket=bucket, since=since)
        self.emit("state", since, data, order, shift, machine=machine)

    def count(
        self,
        start: datetime,
        end: datetime,
        total: int,
        good: int,
        order: str | None,
        ideal: float | None = 2.0,
        machine: str = "m1",
    ) -> None:
        data = CountData(
            good=good,
            reject=total - good,
            total=total,
            start=start,
            end=end,
            ideal_cycle_time_s=ideal,
        )
        self.emit("count", end, data, order, machine=machine)

    def downtime(
        self,
        downtime_id: str,
        start: datetime,
        end: datetime,
        order: str,
        *,
        micro: bool,
        loss: Loss | None = None,
        reason: tuple[str, str] = ("17", "jam"),
        planned: bool = False,
        machine: str = "m1",
    ) -> None:
        """Started unassigned, recoded after 30 s, ended: as the rules emit a downtime.

        With `loss` the events carry it as the rules set it: 'availability' while unassigned,
        then the reason's ('planned' for a planned reason), and `loss` itself once ended (a
        micro-stop's is rules.micro_stop_loss). Without, they carry none (an older gateway).
        """
        d = DowntimeData(
            downtime_id=downtime_id,
            start=start,
            category="unplanned",
            loss=None if loss is None else "availability",
        )
        self.emit("downtime.started", start, d, order, machine=machine)
        code, text = reason
        reason_loss = None if loss is None else ("planned" if planned else "availability")
        recoded = d.model_copy(
            update={
                "reason_code": code,
                "reason_text": text,
                "planned": planned,
                "category": "planned" if planned else "unplanned",
                "loss": reason_loss,
            }
        )
        self.emit(
            "downtime.updated", start + timedelta(seconds=30), recoded, order, machine=machine
        )
        ended = recoded.model_copy(
            update={
                "end": end,
                "duration_s": (end - start).total_seconds(),
                "micro_stop": micro,
                "loss": loss,
            }
        )
        self.emit("downtime.ended", end, ended, order, machine=machine)


def shift_day(micro_loss: Loss | None = None) -> list[Event]:
    line = Line()
    shift = ShiftData(
        shift_id=SHIFT,
        calendar="cal-a",
        name="early",
        start=at(6),
        end=at(14),
        breaks=[ShiftBreak(start=at(10), end=at(10, 30))],
    )
    line.state(at(5), "not_scheduled", None)
    line.emit("shift.started", at(6), shift, None)
    order_a = OrderData(order_id="o-a", status="running", ideal_cycle_time_s=2.0)
    line.emit("order.started", at(6), order_a, "o-a")
    line.state(at(6), "running", "o-a")
    line.count(at(6), at(7), 1500, 1470, "o-a")
    line.state(at(7), "down", "o-a")
    line.downtime("d1", at(7), at(7, 30), "o-a", micro=False)
    line.state(at(7, 30), "running", "o-a")
    line.count(at(7, 30), at(8), 800, 790, "o-a")
    line.state(at(8), "idle", "o-a")
    line.state(at(8, 10), "running", "o-a")
    line.count(at(8, 10), at(10), 2700, 2640, "o-a")
    line.emit("order.ended", at(10), order_a.model_copy(update={"status": "completed"}), "o-a")
    order_b = OrderData(order_id="o-b", status="running", product="bolt", ideal_cycle_time_s=2.0)
    line.emit("order.started", at(10), order_b, "o-b")
    line.state(at(10), "planned_stop", "o-b")
    line.state(at(10, 30), "changeover", "o-b")
    line.downtime("d2", at(10, 30), at(10, 45), "o-b", micro=False)
    line.state(at(10, 45), "running", "o-b")
    line.count(at(10, 45), at(12), 2000, 1980, "o-b")
    line.state(at(12), "down", "o-b")
    line.downtime("d3", at(12), at(12, 1, 30), "o-b", micro=True, loss=micro_loss)
    line.state(at(12, 1, 30), "running", "o-b")
    line.count(at(12, 1, 30), at(14), 3200, 3170, "o-b")
    line.state(at(14), "not_scheduled", None)
    return line.events


def store(dsn: str) -> StoreSection:
    return StoreSection(dsn=SecretStr(dsn), connect_timeout_s=5)


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    await migrate(store(pg_dsn))
    c = await connect(store(pg_dsn))
    try:
        await write_batch(c, [received(e) for e in shift_day()], [])
        yield c
    finally:
        await c.close()


def r4(value: Decimal | None) -> float | None:
    return None if value is None else round(float(value), 4)


def results(row: asyncpg.Record) -> tuple[float | None, ...]:
    return tuple(r4(row[k]) for k in ("availability", "performance", "quality", "oee"))


async def oee(
    conn: asyncpg.Connection, by: str, window: tuple[datetime, datetime] = WINDOW, **kw: Any
) -> list[asyncpg.Record]:
    order = {"order": "order_id", "shift": "shift_id", "machine_hour": "hour"}[by]
    micro = kw.get("micro_stops")
    return await conn.fetch(
        f"SELECT * FROM oee_by_{by}($1, $2, $3) ORDER BY machine, {order} NULLS FIRST",
        *window,
        micro,
    )


# --- per shift -----------------------------------------------------------------------------


async def test_the_shift_computed_by_hand(conn: asyncpg.Connection) -> None:
    outside, row = await oee(conn, "shift")
    # Time outside the shift (05:00-06:00 and 14:00-15:00) has no shift id: its own row,
    # all of it not scheduled.
    assert (outside["shift_id"], outside["scheduled_s"], outside["produced"]) == (None, 0, 0)
    assert (row["shift_id"], row["shift_name"]) == (SHIFT, "early")
    assert (row["shift_start"], row["shift_end"]) == (at(6), at(14))
    # Scheduled: 06:00-14:00 = 28,800 s (05:00-06:00 and 14:00- are not_scheduled and carry
    # no shift). Planned stop: the 30-min break = 1,800 s. PBT = 27,000 s.
    # Downtime: d1 1,800 s + changeover 900 s + micro-stop 90 s = 2,790 s.
    # No downtime has a recorded loss, so the micro-stop is availability loss, as before
    # 0007: APT = 27,000 - 2,790 = 24,210 s.
    inputs = {
        "scheduled_s": 28800,
        "planned_stop_s": 1800,
        "planned_busy_s": 27000,
        "downtime_s": 2790,
        "changeover_s": 900,
        "micro_stop_s": 90,
        "performance_stop_s": 0,  # the micro-stop has no recorded loss: availability
        "idle_s": 600,
        "run_s": 24210,
        "unknown_s": 0,
        "produced": 10200,  # 1500 + 800 + 2700 + 2000 + 3200
        "good": 10050,  # 1470 + 790 + 2640 + 1980 + 3170
        "reject": 150,
        "ideal_s": 20400,  # 10,200 parts x 2 s
        "produced_no_ideal": 0,
        "micro_stops": "recorded",  # no override: each downtime as recorded
    }
    assert {k: row[k] for k in inputs} == inputs
    # A = 24,210 / 27,000 = 0.89667    P = 20,400 / 24,210 = 0.84263
    # Q = 10,050 / 10,200 = 0.98529    OEE = A x P x Q = 20,100 / 27,000 = 0.74444
    assert results(row) == (0.8967, 0.8426, 0.9853, 0.7444)


async def test_micro_stops_as_performance_loss_move_time_from_a_to_p(
    conn: asyncpg.Connection,
) -> None:
    [_, row] = await oee(conn, "shift", micro_stops="performance")
    # APT = 27,000 - (2,790 - 90) = 24,300 s: A = 0.9, P = 20,400 / 24,300 = 0.83951;
    # OEE does not change (ideal time of good parts / PBT either way).
    assert (row["run_s"], row["micro_stops"]) == (24300, "performance")
    assert results(row) == (0.9, 0.8395, 0.9853, 0.7444)

    assert row["performance_stop_s"] == 90

    # The plant's override applies when the caller does not choose, and is named in each row;
    # a call may still choose, 'recorded' included; NULL (the default) is as recorded.
    assert await conn.fetchval("SELECT micro_stops FROM oee_settings") is None
    await conn.execute("UPDATE oee_settings SET micro_stops = 'performance'")
    [_, row] = await oee(conn, "shift")
    assert (row["run_s"], row["micro_stops"]) == (24300, "performance")
    [_, row] = await oee(conn, "shift", micro_stops="availability")
    assert (row["run_s"], row["micro_stops"]) == (24210, "availability")
    [_, row] = await oee(conn, "shift", micro_stops="recorded")
    assert (row["run_s"], row["micro_stops"]) == (24210, "recorded")
    await conn.execute("UPDATE oee_settings SET micro_stops = NULL")
    [_, row] = await oee(conn, "shift")
    assert (row["run_s"], row["micro_stops"]) == (24210, "recorded")


async def test_a_bad_micro_stop_choice_is_an_error_even_without_data(
    conn: asyncpg.Connection,
) -> None:
    with pytest.raises(asyncpg.InvalidParameterValueError, match=r"availability.*performance"):
        await conn.fetch("SELECT * FROM oee_by_order(p_micro_stops => 'both')")
    empty = (at(20), at(21))
    with pytest.raises(asyncpg.InvalidParameterValueError, match="'sometimes'"):
        await oee(conn, "machine_hour", empty, micro_stops="sometimes")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE oee_settings SET micro_stops = 'never'")


# --- per order -----------------------------------------------------------------------------


async def test_each_order_computed_by_hand(conn: asyncpg.Connection) -> None:
    none, a, b = await oee(conn, "order")
    # Time with no order (05:00-06:00 and 14:00-15:00) is all not_scheduled: every ratio's
    # denominator is 0, so every ratio is NULL rather than a division error or a zero.
    assert none["order_id"] is None
    assert (none["scheduled_s"], none["planned_busy_s"], none["produced"]) == (0, 0, 0)
    assert results(none) == (None, None, None, None)

    # o-a, 06:00-10:00: PBT 14,400 s, down 1,800 s, APT 12,600 s (12,000 running + 600 idle).
    # A = 12,600 / 14,400 = 0.875; P = 5,000 x 2 / 12,600 = 0.79365; Q = 4,900 / 5,000 = 0.98;
    # OEE = 4,900 x 2 / 14,400 = 0.68056.
    assert a["order_id"] == "o-a"
    assert (a["planned_busy_s"], a["downtime_s"], a["run_s"], a["idle_s"]) == (
        14400,
        1800,
        12600,
        600,
    )
    assert (a["produced"], a["good"], a["ideal_s"]) == (5000, 4900, 10000)
    assert results(a) == (0.875, 0.7937, 0.98, 0.6806)

    # o-b, 10:00-14:00: scheduled 14,400 s, break 1,800 s, PBT 12,600 s; changeover 900 s and
    # micro-stop 90 s: APT 11,610 s. A = 0.92143; P = 5,200 x 2 / 11,610 = 0.89578;
    # Q = 5,150 / 5,200 = 0.99038; OEE = 5,150 x 2 / 12,600 = 0.81746.
    assert (b["order_id"], b["product"]) == ("o-b", "bolt")
    assert (b["scheduled_s"], b["planned_stop_s"], b["downtime_s"], b["run_s"]) == (
        14400,
        1800,
        990,
        11610,
    )
    assert (b["produced"], b["good"], b["reject"], b["ideal_s"]) == (5200, 5150, 50, 10400)
    assert results(b) == (0.9214, 0.8958, 0.9904, 0.8175)


async def test_an_order_on_two_machines_is_one_row_per_machine(conn: asyncpg.Connection) -> None:
    before = [tuple(r) for r in await oee(conn, "order")]
    # m2 runs o-b beside m1 (another operation of the same order) from 11:00, still running.
    line = Line()
    o_b = OrderData(order_id="o-b", status="running", product="bolt", ideal_cycle_time_s=2.0)
    line.emit("order.started", at(11), o_b, "o-b", machine="m2")
    line.state(at(11), "running", "o-b", machine="m2")
    line.count(at(11), at(12), 1800, 1800, "o-b", machine="m2")
    await write_batch(conn, [received(e) for e in line.events], [])

    rows = await oee(conn, "order", (at(11), at(12)))
    assert [(r["machine"], r["order_id"], r["product"]) for r in rows] == [
        ("m1", "o-b", "bolt"),
        ("m2", "o-b", "bolt"),
    ]
    assert [r["produced"] for r in rows] == [1600, 1800]  # m1: 2000 parts over 10:45-12:00
    # m1's rows are what they were: m2's operation neither repeats nor changes them.
    assert [tuple(r) for r in await oee(conn, "order") if r["machine"] == "m1"] == before


async def test_a_window_clips_orders_and_adjacent_windows_add_up(
    conn: asyncpg.Connection,
) -> None:
    # 09:00-11:00: the last hour of o-a (running; 1,473 of the 2,700-part record over
    # 08:10-10:00 fall after 09:00: 2,700 - floor(2,700 x 50/110)) and the first of o-b.
    a, b = await oee(conn, "order", (at(9), at(11)))
    assert (a["order_id"], a["planned_busy_s"], a["run_s"], a["produced"]) == (
        "o-a",
        3600,
        3600,
        1473,
    )
    # o-b 10:00-11:00: break 1,800 s, changeover 900 s, running 900 s with 400 of the 2,000
    # parts made over 10:45-12:00 (900 / 4,500 of the record).
    assert (b["order_id"], b["planned_busy_s"], b["run_s"], b["produced"]) == (
        "o-b",
        1800,
        900,
        400,
    )
    assert results(b)[:2] == (0.5, 0.8889)  # P = 400 x 2 / 900

    whole = {r["order_id"]: r for r in await oee(conn, "order")}
    split = [await oee(conn, "order", w) for w in ((WINDOW[0], at(9, 17)), (at(9, 17), WINDOW[1]))]
    for key in ("scheduled_s", "downtime_s", "run_s", "produced", "good", "reject", "ideal_s"):
        for order_id, row in whole.items():
            parts = [r[key] for rows in split for r in rows if r["order_id"] == order_id]
            assert sum(parts) == row[key], (order_id, key)


# --- per machine-hour ----------------------------------------------------------------------


async def test_hours_computed_by_hand_and_summing_to_the_shift(conn: asyncpg.Connection) -> None:
    hours = await oee(conn, "machine_hour")
    assert [r["hour"] for r in hours] == [at(h) for h in range(5, 15)]
    by_hour = {r["hour"].hour: r for r in hours}

    h7 = by_hour[7]  # down 07:00-07:30, running 07:30-08:00 with 800 parts
    assert (h7["planned_busy_s"], h7["downtime_s"], h7["run_s"], h7["produced"]) == (
        3600,
        1800,
        1800,
        800,
    )
    assert results(h7)[:2] == (0.5, 0.8889)  # P = 1,600 / 1,800

    # The 2,700-part record over 08:10-10:00 (6,600 s) is split at 09:00 by cumulative floors:
    # up to 09:00 floor(2,700 x 3,000 / 6,600) = 1,227 parts, floor(2,640 x 3,000/6,600) = 1,200
    # good; 09:00-10:00 gets the rest, 1,473 parts and 1,440 good.
    h8, h9 = by_hour[8], by_hour[9]
    assert (h8["idle_s"], h8["run_s"], h8["produced"], h8["good"]) == (600, 3600, 1227, 1200)
    assert (h9["produced"], h9["good"], h9["reject"]) == (1473, 1440, 33)
    assert results(h8)[:2] == (1.0, 0.6817)  # P = 2,454 / 3,600

    h12 = by_hour[12]  # micro-stop 90 s, then 3,510 s running with floor(3,200 x 3,510/7,110)
    assert (h12["micro_stop_s"], h12["run_s"], h12["produced"], h12["good"]) == (
        90,
        3510,
        1579,
        1564,
    )
    assert r4(h12["availability"]) == 0.975

    assert results(by_hour[5]) == (None, None, None, None)  # not scheduled
    assert by_hour[14]["scheduled_s"] == 0  # the open not_scheduled interval, clipped at 15:00
    assert by_hour[14]["run_s"] == 0

    [_, shift] = await oee(conn, "shift")
    for key in (
        "scheduled_s",
        "planned_stop_s",
        "planned_busy_s",
        "downtime_s",
        "micro_stop_s",
        "idle_s",
        "run_s",
        "produced",
        "good",
        "reject",
        "ideal_s",
    ):
        assert sum(r[key] for r in hours) == shift[key], key


# --- the loss each downtime was recorded with (migration 0007) ------------------------------


def cleaning_day() -> list[Event]:
    """Machine m3 in the same shift, order o-p (ideal cycle 2 s), with losses recorded.

    06:00-08:00       running  count 3000 parts, 2970 good
    08:00-08:40       down     c1 planned cleaning (planned reason: loss planned)
    08:40-10:00       running  count 2000 parts, 1990 good
    10:00-10:30       planned_stop (the break)
    10:30-10:50       down     c2 jam (loss availability)
    10:50-12:00       running  count 1800 parts, 1800 good
    12:00-12:01       down     c3 micro-stop (loss performance: rules.micro_stop_loss)
    12:01-13:00       running  count 1700 parts, 1690 good
    13:00-13:01:30    down     c4 micro-stop with a planned reason (loss planned)
    13:01:30-14:00    running  count 1700 parts, 1690 good
    14:00-            not_scheduled
    """
    line = Line()
    m3 = {"machine": "m3"}
    shift = ShiftData(
        shift_id=SHIFT,
        calendar="cal-a",
        name="early",
        start=at(6),
        end=at(14),
        breaks=[ShiftBreak(start=at(10), end=at(10, 30))],
    )
    line.emit("shift.started", at(6), shift, None, **m3)
    order = OrderData(order_id="o-p", status="running", ideal_cycle_time_s=2.0)
    line.emit("order.started", at(6), order, "o-p", **m3)
    cleaning = ("c-12", "planned cleaning")
    check = ("c-13", "quality check")
    line.state(at(6), "running", "o-p", **m3)
    line.count(at(6), at(8), 3000, 2970, "o-p", **m3)
    line.state(at(8), "down", "o-p", **m3)
    planned: dict[str, Any] = {"loss": "planned", "planned": True, **m3}
    line.downtime("c1", at(8), at(8, 40), "o-p", micro=False, reason=cleaning, **planned)
    line.state(at(8, 40), "running", "o-p", **m3)
    line.count(at(8, 40), at(10), 2000, 1990, "o-p", **m3)
    line.state(at(10), "planned_stop", "o-p", **m3)
    line.state(at(10, 30), "down", "o-p", **m3)
    line.downtime("c2", at(10, 30), at(10, 50), "o-p", micro=False, loss="availability", **m3)
    line.state(at(10, 50), "running", "o-p", **m3)
    line.count(at(10, 50), at(12), 1800, 1800, "o-p", **m3)
    line.state(at(12), "down", "o-p", **m3)
    line.downtime("c3", at(12), at(12, 1), "o-p", micro=True, loss="performance", **m3)
    line.state(at(12, 1), "running", "o-p", **m3)
    line.count(at(12, 1), at(13), 1700, 1690, "o-p", **m3)
    line.state(at(13), "down", "o-p", **m3)
    line.downtime("c4", at(13), at(13, 1, 30), "o-p", micro=True, reason=check, **planned)
    line.state(at(13, 1, 30), "running", "o-p", **m3)
    line.count(at(13, 1, 30), at(14), 1700, 1690, "o-p", **m3)
    line.state(at(14), "not_scheduled", None, **m3)
    return line.events


async def m3_rows(conn: asyncpg.Connection, by: str, **kw: Any) -> list[asyncpg.Record]:
    return [r for r in await oee(conn, by, **kw) if r["machine"] == "m3"]


async def test_planned_stops_and_micro_stops_are_charged_as_recorded(
    conn: asyncpg.Connection,
) -> None:
    await write_batch(conn, [received(e) for e in cleaning_day()], [])
    losses = await conn.fetch(
        "SELECT downtime_id, loss FROM downtimes WHERE machine = 'm3' ORDER BY 1"
    )
    assert [tuple(r) for r in losses] == [
        ("c1", "planned"),
        ("c2", "availability"),
        ("c3", "performance"),  # the ended event's loss, not the started event's
        ("c4", "planned"),
    ]

    [_, row] = await m3_rows(conn, "shift")
    # Scheduled 06:00-14:00 = 28,800 s. Planned stops: the break 1,800 s + the cleaning c1
    # 2,400 s + the planned check c4 90 s = 4,290 s; PBT = 24,510 s.
    # Down time 2,400 + 1,200 + 60 + 90 = 3,750 s, less the planned 2,490 s: downtime
    # 1,260 s (c2 1,200 s + the micro-stop c3 60 s; c4 is planned, not a micro-stop's loss).
    # c3 was recorded as performance loss: it stays in run time.
    # APT = 24,510 - 1,260 + 60 = 23,310 s (= running 23,250 s + c3 60 s).
    inputs = {
        "scheduled_s": 28800,
        "planned_stop_s": 4290,
        "planned_busy_s": 24510,
        "downtime_s": 1260,
        "changeover_s": 0,
        "micro_stop_s": 60,
        "performance_stop_s": 60,
        "run_s": 23310,
        "produced": 10200,  # 3000 + 2000 + 1800 + 1700 + 1700
        "good": 10140,  # 2970 + 1990 + 1800 + 1690 + 1690
        "ideal_s": 20400,
        "micro_stops": "recorded",
    }
    assert {k: row[k] for k in inputs} == inputs
    # A = 23,310 / 24,510 = 0.95104    P = 20,400 / 23,310 = 0.87516
    # Q = 10,140 / 10,200 = 0.99412    OEE = 10,140 x 2 / 24,510 = 0.82742
    # (Before 0007 the cleaning and the check were availability loss: PBT 27,000 s, APT
    # 23,250 s, A = 0.86111.)
    assert results(row) == (0.951, 0.8752, 0.9941, 0.8274)
    [_, order] = await m3_rows(conn, "order")  # time with no order, then o-p
    assert order["order_id"] == "o-p"
    assert {k: order[k] for k in inputs} == inputs

    # Override availability: c3 is downtime, APT = 24,510 - 1,260 = 23,250 s;
    # A = 23,250 / 24,510 = 0.94859, P = 20,400 / 23,250 = 0.87742, OEE unchanged.
    [_, row] = await m3_rows(conn, "shift", micro_stops="availability")
    assert (row["performance_stop_s"], row["run_s"], row["micro_stops"]) == (
        0,
        23250,
        "availability",
    )
    assert (row["planned_stop_s"], row["downtime_s"]) == (4290, 1260)
    assert results(row) == (0.9486, 0.8774, 0.9941, 0.8274)
    # Override performance: c3 as recorded; the planned check c4 stays a planned stop.
    [_, row] = await m3_rows(conn, "shift", micro_stops="performance")
    assert (row["planned_stop_s"], row["run_s"], row["micro_stops"]) == (
        4290,
        23310,
        "performance",
    )

    hours = {r["hour"].hour: r for r in await m3_rows(conn, "machine_hour")}
    # 08:00-09:00: the cleaning 2,400 s is a planned stop; PBT and APT are the 1,200 s of
    # running, with floor(2,000 x 1,200 / 4,800) = 500 parts: A = 1, P = 1,000 / 1,200.
    h8 = hours[8]
    assert (h8["planned_stop_s"], h8["planned_busy_s"], h8["downtime_s"], h8["run_s"]) == (
        2400,
        1200,
        0,
        1200,
    )
    assert (h8["produced"], results(h8)[:2]) == (500, (1.0, 0.8333))
    # 12:00-13:00: the 60 s micro-stop in run time (A = 1); overridden, A = 3,540 / 3,600.
    assert (hours[12]["run_s"], r4(hours[12]["availability"])) == (3600, 1.0)
    [h12] = [
        r
        for r in await m3_rows(conn, "machine_hour", micro_stops="availability")
        if r["hour"] == at(12)
    ]
    assert (h12["run_s"], r4(h12["availability"])) == (3540, 0.9833)
    # 13:00-14:00: the planned 90 s check is out of PBT: PBT = APT = 3,510 s.
    h13 = hours[13]
    assert (h13["planned_stop_s"], h13["planned_busy_s"], h13["run_s"]) == (90, 3510, 3510)
    for key in ("planned_stop_s", "downtime_s", "micro_stop_s", "performance_stop_s", "run_s"):
        assert sum(r[key] for r in hours.values()) == row[key], key


async def test_a_store_migrated_to_0007_takes_each_downtimes_loss_from_its_stored_events(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store at 0006: the recorder kept no loss, though the gateway already sent one for the
    # micro-stop d3 (performance); d1 and d2 came from a gateway that sent none.
    older = tmp_path / "migrations"
    shutil.copytree(Path(str(migrate_module.__file__)).parent / "migrations", older)
    for later in older.glob("*.sql"):
        if later.name >= "0007":
            later.unlink()
    monkeypatch.setattr(migrate_module, "MIGRATIONS_DIR", older)
    assert (await migrate(store(pg_dsn))).applied[-1] == "0006_work_orders_per_machine.sql"
    monkeypatch.undo()

    c = await connect(store(pg_dsn))
    try:
        events = shift_day(micro_loss="performance")
        downtime_events = [e for e in events if e.type.startswith("downtime.")]
        # The rest goes through today's recorder (no statement of it touches downtimes) ...
        await write_batch(c, [received(e) for e in events if e not in downtime_events], [])
        # ... and the downtimes as 0006's recorder stored them: raw events, rows without loss.
        await c.executemany(
            "INSERT INTO events (event_id, ts, type, gateway, seq, site, area, line, machine,"
            " order_id, shift_id, data, topic) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
            " $11, $12, $13)",
            [
                (
                    *(e.event_id, e.ts, e.type, e.gateway, e.seq, e.site, e.area, e.line),
                    *(e.machine, e.order, e.shift, e.data.model_dump_json(), received(e).topic),
                )
                for e in downtime_events
            ],
        )
        await c.execute(
            "INSERT INTO downtimes (downtime_id, site, area, line, machine, start_ts, end_ts,"
            " duration_s, reason_code, reason_text, category, planned, order_id, shift_id,"
            " micro_stop, event_ts, event_rank, event_id, end_event_id)"
            " SELECT data->>'downtime_id', site, area, line, machine,"
            " (data->>'start')::timestamptz, (data->>'end')::timestamptz,"
            " (data->>'duration_s')::float8, data->>'reason_code', data->>'reason_text',"
            " data->>'category', (data->>'planned')::boolean, order_id, shift_id,"
            " (data->>'micro_stop')::boolean, ts, 2, event_id, event_id"
            " FROM events WHERE type = 'downtime.ended'"
        )
        await c.execute("UPDATE oee_settings SET micro_stops = 'availability'")  # 0005's default

        applied = (await migrate(store(pg_dsn))).applied
        assert applied[0] == "0007_downtime_loss.sql"
        losses = await c.fetch("SELECT downtime_id, loss FROM downtimes ORDER BY 1")
        # d3 from its newest event (the ended one; started and updated said availability).
        assert [tuple(r) for r in losses] == [("d1", None), ("d2", None), ("d3", "performance")]
        assert await c.fetchval("SELECT micro_stops FROM oee_settings") is None

        [_, shift] = await oee(c, "shift")
        # d3 as recorded: APT = 27,000 - 2,790 + 90 = 24,300 s, A = 0.9, P = 0.83951,
        # OEE unchanged; d1 and d2 (no loss) stay availability loss as before.
        assert (shift["downtime_s"], shift["performance_stop_s"], shift["run_s"]) == (
            2790,
            90,
            24300,
        )
        assert results(shift) == (0.9, 0.8395, 0.9853, 0.7444)
        _, a, b = await oee(c, "order")
        # o-a holds only d1, recorded without loss: the figures of before 0007 (see
        # test_each_order_computed_by_hand).
        assert (a["downtime_s"], a["run_s"], results(a)) == (
            1800,
            12600,
            (0.875, 0.7937, 0.98, 0.6806),
        )
        # o-b: PBT 12,600 s, downtime 990 s of which d3's 90 s is in run time: APT 11,700 s;
        # A = 0.92857, P = 10,400 / 11,700 = 0.88889.
        assert (b["run_s"], results(b)) == (11700, (0.9286, 0.8889, 0.9904, 0.8175))
        [_, shift] = await oee(c, "shift", micro_stops="availability")
        assert shift["run_s"] == 24210  # the figures of before 0007, on request

        # From here the recorder stores each event's loss: d1 recoded by a newer gateway.
        ended = next(e for e in downtime_events if e.type == "downtime.ended")  # d1's
        recoded = ended.data.model_copy(update={"reason_code": "41", "loss": "availability"})
        line = Line()
        line.emit("downtime.updated", at(7, 31), recoded, "o-a")
        await write_batch(c, [received(e) for e in line.events], [])
        assert await c.fetchval("SELECT loss FROM downtimes WHERE downtime_id = 'd1'") == (
            "availability"
        )
    finally:
        await c.close()


# --- gaps, open intervals, unknown ideal cycle times ---------------------------------------


async def test_open_intervals_data_gaps_and_missing_ideal_times(conn: asyncpg.Connection) -> None:
    line = Line()
    # m2 runs order o-c from 06:00 and is still running; its link was down 06:20-06:30.
    line.state(at(6), "running", "o-c", machine="m2")
    line.state(at(6, 20), "unknown", "o-c", machine="m2")
    line.state(at(6, 30), "running", "o-c", machine="m2")
    line.count(at(6), at(6, 20), 500, 500, "o-c", ideal=None, machine="m2")
    line.count(at(6, 30), at(7, 30), 600, 600, "o-c", machine="m2")
    await write_batch(conn, [received(e) for e in line.events], [])

    [row] = [r for r in await oee(conn, "order", (at(6), at(7))) if r["machine"] == "m2"]
    # The open interval ends at the window's end; the gap is excluded and shown.
    assert (row["scheduled_s"], row["unknown_s"], row["run_s"]) == (3000, 600, 3000)
    # 500 parts + 300 of the 600 made over 06:30-07:30; 500 of them without an ideal time.
    assert (row["produced"], row["produced_no_ideal"], row["ideal_s"]) == (800, 500, 600)
    assert r4(row["availability"]) == 1.0
    assert row["performance"] is None and row["oee"] is None  # not flattered by the gap
    assert r4(row["quality"]) == 1.0

    # Without an end to the window the open interval runs until now.
    before = datetime.now(UTC)
    rows = await conn.fetch("SELECT * FROM oee_by_order() WHERE machine = 'm2'")
    after = datetime.now(UTC)
    gap = timedelta(minutes=10)
    run_s = float(rows[0]["run_s"])
    assert (before - at(6) - gap).total_seconds() - 1 <= run_s
    assert run_s <= (after - at(6) - gap).total_seconds() + 1


async def test_any_delivery_order_gives_the_same_figures(
    pg_dsn: str, conn: asyncpg.Connection
) -> None:
    await write_batch(conn, [received(e) for e in cleaning_day()], [])
    expected = [
        [tuple(r) for r in await oee(conn, by)] for by in ("order", "shift", "machine_hour")
    ]
    events = shift_day() + cleaning_day()
    rng = random.Random(11)
    deliveries = events + rng.sample(events, 30)
    rng.shuffle(deliveries)
    await conn.execute(
        "TRUNCATE events, counts, state_intervals, downtimes, work_orders, shifts, exports"
    )
    for i in range(0, len(deliveries), 4):
        await write_batch(conn, [received(e) for e in deliveries[i : i + 4]], [])
    again = [[tuple(r) for r in await oee(conn, by)] for by in ("order", "shift", "machine_hour")]
    assert again == expected


async def test_the_same_figures_on_timescaledb(
    conn: asyncpg.Connection, timescale_dsn: str
) -> None:
    grains = ("order", "shift", "machine_hour")
    await write_batch(conn, [received(e) for e in cleaning_day()], [])
    expected = {by: [tuple(r) for r in await oee(conn, by)] for by in grains}
    assert (await migrate(store(timescale_dsn))).timescaledb
    ts = await connect(store(timescale_dsn))
    try:
        await write_batch(ts, [received(e) for e in shift_day() + cleaning_day()], [])
        got = {by: [tuple(r) for r in await oee(ts, by)] for by in grains}
        _, shift, _, cleaning = await oee(ts, "shift")  # m1 and m3, each outside and in
    finally:
        await ts.close()
    assert got == expected
    assert results(shift) == (0.8967, 0.8426, 0.9853, 0.7444)
    assert results(cleaning) == (0.951, 0.8752, 0.9941, 0.8274)


# --- mesgw report oee ----------------------------------------------------------------------


def config_file(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[gateway]\nid = "gw"\nsite = "s1"\n[store]\ndsn = "{dsn}"\n')
    return path


async def report(*args: str) -> int:
    # The command runs its own event loop, so it runs in a thread beside the test's.
    return await asyncio.to_thread(main, ["report", "oee", *args])


async def test_the_report_prints_the_figures_the_sql_computes(
    conn: asyncpg.Connection, pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(config_file(tmp_path, pg_dsn))
    window = ["--from", "2025-03-04T05:00Z", "--to", "2025-03-04 15:00"]  # no zone: UTC
    assert await report("--by", "shift", "--json", "--config", cfg, *window) == 0
    outside, shift = json.loads(capsys.readouterr().out)
    assert outside["shift_id"] is None
    assert (shift["shift_id"], shift["shift_start"], shift["run_s"]) == (
        SHIFT,
        "2025-03-04T06:00:00Z",
        24210.0,
    )
    ratios = [round(shift[k], 4) for k in ("availability", "performance", "quality", "oee")]
    assert ratios == [0.8967, 0.8426, 0.9853, 0.7444]
    assert shift["micro_stops"] == "recorded"

    args = ["--by", "order", "--machine", "m1", "--micro-stops", "performance", "--config", cfg]
    assert await report(*args, *window) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "OEE by order, 2025-03-04T05:00:00Z to 2025-03-04T15:00:00Z;"
        " micro-stops counted as performance loss"
    )
    assert out[1].split() == [
        *("machine", "order", "scheduled", "planned", "busy", "downtime", "micro-stops"),
        *("run", "produced", "good", "held", "A", "%", "P", "%", "Q", "%", "OEE", "%"),
    ]
    # o-b: PBT 3:30:00, downtime 990 s, micro-stops 90 s, APT 11,700 s with micro-stops as
    # performance loss: A 92.9 %, P 88.9 %, Q 99.0 %, OEE 81.7 %.
    assert out[3].split() == [
        *("s1/a1/l1/m1", "o-b", "4:00:00", "3:30:00", "0:16:30", "0:01:30", "3:15:00"),
        *("5200", "5150", "0", "92.9", "88.9", "99.0", "81.7"),
    ]
    # The time outside any order (before and after the shift) had nothing scheduled, made
    # nothing and holds nothing: the table leaves the row out and says so; JSON keeps it.
    assert out[2].split()[1] == "o-a"
    assert out[-1] == "1 empty row(s) outside any order left out (see --json)"

    # By default micro-stops are charged as each downtime recorded, and the header says so.
    assert await report("--by", "shift", "--config", cfg, *window) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(
        "; micro-stops charged as each downtime recorded (rules.micro_stop_loss)"
    )
    assert out[2].split()[1:3] == ["early", SHIFT]
    assert out[2].split()[-4:] == ["89.7", "84.3", "98.5", "74.4"]

    assert await report("--by", "order", "--machine", "m9", "--config", cfg, *window) == 0
    assert "no data" in capsys.readouterr().out

    # By hour without --from: the 24 hours up to --to.
    assert await report("--by", "hour", "--json", "--to", "2025-03-04T15:00Z", "--config", cfg) == 0
    hours = json.loads(capsys.readouterr().out)
    assert [h["hour"][11:13] for h in hours] == [f"{h:02d}" for h in range(5, 15)]


async def test_the_report_refuses_bad_windows_and_unmigrated_stores(
    pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(config_file(tmp_path, pg_dsn))  # pg_dsn is not migrated here
    assert await report("--by", "order", "--config", cfg) == 1
    assert "run `mesgw db migrate` first" in capsys.readouterr().err

    backwards = ["--from", "2025-03-04T10:00Z", "--to", "2025-03-04T09:00Z"]
    assert await report("--by", "shift", "--config", cfg, *backwards) == 1
    assert "must be after --from" in capsys.readouterr().err

    with pytest.raises(SystemExit) as info:
        await report("--by", "shift", "--from", "yesterday", "--config", cfg)
    assert info.value.code == 2
    assert "not an ISO-8601 time" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("loss", "run_s", "downtime_s"), [("performance", 1200, 300), ("availability", 900, 300)]
)
async def test_a_starved_stop_is_charged_as_the_rules_recorded_it(
    pg_dsn: str, loss: str, run_s: int, downtime_s: int
) -> None:
    # 20 minutes of a PackTags filler: 10 running, 5 Suspended (starved, no bottles), 5
    # running. The rules record the stop's loss from rules.starved_blocked_loss; OEE keeps
    # it out of availability (performance, the default) or charges it there.
    from connectors.sample import Sample
    from rules.config import RulesSection
    from rules.engine import Engine
    from rules.inputs import Tick
    from rules.spec import MachineSpec, PlantRules, TagSpec

    spec = MachineSpec(
        "m1",
        "a1",
        "l1",
        {"good": TagSpec("good_count", 1 << 32), "state": TagSpec("state")},
        ideal_cycle_time_s=1.0,
        down_after_s=600,
        state_table="packml-packtags",
    )
    rules = RulesSection(count_interval_s=60, starved_blocked_loss=loss)  # type: ignore[arg-type]
    engine = Engine([spec], PlantRules(rules=rules))
    drafts = []
    start = at(8)
    good = 0
    for s in range(0, 1201, 1):
        state = 5 if 600 <= s < 900 else 6
        if state == 6 and s:
            good += 1
        drafts += engine.feed(Sample("m1", "good", good, start + timedelta(seconds=s)))
        drafts += engine.feed(Sample("m1", "state", state, start + timedelta(seconds=s)))
        drafts += engine.feed(Tick(start + timedelta(seconds=s)))
    drafts += engine.stop(start + timedelta(seconds=1200))
    plant = Plant()
    events = [
        plant.emit(d.type, d.ts, d.data, machine=d.machine, order=d.order, shift=d.shift)
        for d in drafts
    ]
    await migrate(store(pg_dsn))
    conn = await connect(store(pg_dsn))
    try:
        await write_batch(conn, [received(e) for e in events], [])
        [downtime] = await conn.fetch("SELECT category, loss, micro_stop FROM downtimes")
        [row] = await conn.fetch("SELECT * FROM oee_by_shift()")
    finally:
        await conn.close()
    assert tuple(downtime) == ("starved", loss, False)
    assert (row["downtime_s"], row["run_s"]) == (downtime_s, run_s)
    assert row["availability"] == Decimal(run_s) / 1200


def held_day() -> list[Event]:
    """The shift day, plus a counter that jumped by 1,000,000 during o-b (held, never
    counted) and a machine m2 whose ideal cycle time is too long (3 s against a real 2.4 s)."""
    line = Line()
    line.events = shift_day()
    line.seq = len(line.events)
    held = HeldCountData(
        held_id="m1-good-1741089600000",
        counter="good",
        role="good_count",
        old_raw=1_020,
        new_raw=1_001_020,
        claimed=1_000_000,
        plausible_max=45,
        reason="spike",
        start=at(11, 59, 30),
        end=at(12),
    )
    line.emit("count.held", at(12), held, "o-b")
    order = OrderData(order_id="o-m2", status="running", ideal_cycle_time_s=3.0)
    line.emit("order.started", at(6), order, "o-m2", machine="m2")
    line.state(at(6), "running", "o-m2", machine="m2")
    line.count(at(6), at(7), 1500, 1500, "o-m2", ideal=3.0, machine="m2")
    line.state(at(7), "not_scheduled", None, machine="m2")
    return line.events


async def test_the_report_shows_held_parts_apart_and_flags_performance_above_100(
    pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate(store(pg_dsn))
    c = await connect(store(pg_dsn))
    try:
        await write_batch(c, [received(e) for e in held_day()], [])
    finally:
        await c.close()
    cfg = str(config_file(tmp_path, pg_dsn))
    window = ["--from", "2025-03-04T05:00Z", "--to", "2025-03-04T15:00Z"]

    assert await report("--by", "order", "--config", cfg, *window) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[1]: line.split() for line in out[2:] if line.startswith("s1/")}
    # The million parts are held: o-b's produced and good are the shift day's, unchanged.
    assert rows["o-b"][7:10] == ["5200", "5150", "1000000"]
    assert rows["o-a"][9] == "0"
    # m2 made 1,500 parts in an hour at an ideal 3 s: performance 125 %, flagged.
    assert rows["o-m2"][7:13] == ["1500", "1500", "0", "100.0", "125.0", "!"]
    assert "!" not in rows["o-b"]  # no flag where performance is below 100 %
    assert out[-3].startswith("! performance above 100 %: the machine ran faster")
    assert out[-2].startswith("held: 1000000 parts the rules could not vouch for")
    assert out[-1] == "2 empty row(s) outside any order left out (see --json)"

    # By shift and by hour, the held parts land in their shift and their hour.
    assert await report("--by", "shift", "--json", "--config", cfg, *window) == 0
    shifts = json.loads(capsys.readouterr().out)
    assert {(r["machine"], r["shift_id"]): r["held"] for r in shifts} == {
        ("m1", None): 0,
        ("m1", SHIFT): 1_000_000,
        ("m2", None): 0,
        ("m2", SHIFT): 0,
    }
    assert await report("--by", "hour", "--json", "--config", cfg, *window) == 0
    hours = json.loads(capsys.readouterr().out)
    assert {r["hour"]: r["held"] for r in hours if r["held"]} == {"2025-03-04T12:00:00Z": 1_000_000}

    # `mesgw counts held` lists it with what the counter showed.
    assert await asyncio.to_thread(main, ["counts", "held", "--config", cfg]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text == [
        "m1-good-1741089600000  s1/a1/l1/m1  order o-b  shift " + SHIFT,
        "  good (good_count): 1020 at 2025-03-04T11:59:30Z -> 1001020 at 2025-03-04T12:00:00Z",
        "  claims 1000000 parts, plausible at most 45; held: spike (faster than the machine"
        " can make parts)",
        "  pending: accept or reject it with `mesgw correct held`",
        "1 held count(s), 1 pending; 1000000 parts in no total",
    ]
    args = ["counts", "held", "--json", "--order", "o-a", "--config", cfg]
    assert await asyncio.to_thread(main, args) == 0
    assert json.loads(capsys.readouterr().out) == []
    args = ["counts", "held", "--json", "--machine", "m1", "--from", "2025-03-04T12:00Z"]
    assert await asyncio.to_thread(main, [*args, "--config", cfg]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["claimed"], listed["plausible_max"], listed["reason"]) == (
        1_000_000,
        45,
        "spike",
    )

    # A clerk's decision (migration 0009) is what the report and the list show from then on.
    c = await asyncpg.connect(pg_dsn)
    try:
        await c.execute("INSERT INTO users (name, role) VALUES ('clerk1', 'clerk')")
        await decide_held(
            c,
            Actor("clerk1", "clerk", "cli"),
            held_id="m1-good-1741089600000",
            accept=True,
            parts=40,
            reason="40 were real",
        )
    finally:
        await c.close()
    assert await report("--by", "order", "--config", cfg, *window) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[1]: line.split() for line in out[2:] if line.startswith("s1/")}
    assert rows["o-b"][7:10] == ["5240", "5190", "0"]
    assert not any(line.startswith("held:") for line in out)
    assert await asyncio.to_thread(main, ["counts", "held", "--config", cfg]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[-2:] == [
        "  partly accepted by clerk1: 40 parts counted",
        "1 held count(s), 0 pending; 999960 parts in no total",
    ]


async def test_counts_held_on_an_unmigrated_store_says_to_migrate(
    pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(config_file(tmp_path, pg_dsn))
    assert await asyncio.to_thread(main, ["counts", "held", "--config", cfg]) == 1
    assert "run `mesgw db migrate` first" in capsys.readouterr().err


async def test_oee_charges_a_downtime_as_the_clerk_corrected_it(conn: asyncpg.Connection) -> None:
    # d1 (o-a, 07:00-07:30) was recorded as a jam: 1,800 s of availability loss. The clerk
    # splits it at 07:10 and recodes the second piece to the planned cleaning it was: from
    # then on OEE charges 600 s as downtime and 1,200 s as a planned stop (o-a's PBT shrinks).
    from gateway.review import actions
    from gateway.review.users import Actor, add_user
    from rules.config import ReasonConfig

    catalog = [ReasonConfig(code="30", text="cleaning", planned=True)]
    await add_user(conn, "clara", "clerk")
    clara = Actor(user="clara", role="clerk", source="cli")
    _, before, _ = await oee(conn, "order")
    assert (before["downtime_s"], before["planned_stop_s"]) == (1800, 0)

    await actions.split(conn, clara, downtime_id="d1", at=at(7, 10), reason="two stops")
    piece = await conn.fetchval(
        "SELECT downtime_id FROM downtimes_shown WHERE lineage = 'd1' AND downtime_id <> 'd1'"
    )
    _, split, _ = await oee(conn, "order")
    assert (split["downtime_s"], split["planned_stop_s"]) == (1800, 0)  # both still a jam

    await actions.recode(
        conn, clara, downtime_id=piece, code="30", catalog=catalog, reason="it was cleaning"
    )
    _, a, b = await oee(conn, "order")
    assert (a["downtime_s"], a["planned_stop_s"], a["planned_busy_s"]) == (600, 1200, 13200)
    assert (a["run_s"], r4(a["availability"])) == (12600, 0.9545)  # 12,600 / 13,200
    assert (b["downtime_s"], b["planned_stop_s"]) == (990, 1800)  # o-b untouched
    [shift] = [r for r in await oee(conn, "shift") if r["shift_id"] == SHIFT]
    assert (shift["downtime_s"], shift["planned_stop_s"]) == (2790 - 1200, 1800 + 1200)
