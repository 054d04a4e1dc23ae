"""A shift of two machines, written through the store's writer as a gateway would send it.

shift cal-20250304-early 06:00-14:00 (UTC), line s1/a1/l1, machines m1 and m2

m1  05:50-06:00  running, no order (10 min with no order)
    06:00-10:00  order o-1 (quantity 1000): counts 4 x 250 (245 good, 5 reject); the
                 08:00-09:00 record is flagged 'gap'
    07:00-07:20  downtime m1-d1, no reason (20 min)            -> queue
    07:30-07:31  downtime m1-d2, a micro-stop, no reason       -> not queued
    08:30        held count m1-good-1 (spike, claims 400)      -> queue
    10:00-14:00  order o-2 (quantity 500): counts 4 x 120 (118 good, 2 reject)
m2  06:00-10:00  order o-1: counts 4 x 240 (240 good, 0 reject): 960, 4 % short -> queue
    09:00-09:05  link down (unknown)                            -> queue
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pydantic import SecretStr

from gateway.config import StoreSection
from gateway.events import (
    CountData,
    DowntimeData,
    Draft,
    Event,
    EventType,
    HeldCountData,
    OrderData,
    ShiftData,
    StateBucket,
    StateData,
    uuid7,
)
from gateway.store import migrate, write_batch
from gateway.testing import received

DAY = datetime(2025, 3, 4, tzinfo=UTC)
SHIFT = "cal-20250304-early"
WINDOW = (DAY, DAY + timedelta(days=1))


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute, seconds=second)


def store(dsn: str, **kw: Any) -> StoreSection:
    return StoreSection(dsn=SecretStr(dsn), **kw)


class Plant:
    def __init__(self) -> None:
        self.seq = 0
        self.events: list[Event] = []

    def emit(
        self,
        type_: EventType,
        ts: datetime,
        data: Any,
        machine: str,
        order: str | None,
        shift: str | None = SHIFT,
    ) -> None:
        self.seq += 1
        draft = Draft(type_, ts, "a1", "l1", machine, data, order=order, shift=shift)
        self.events.append(draft.seal(event_id=uuid7(), seq=self.seq, gateway="gw", site="s1"))

    def state(
        self,
        since: datetime,
        bucket: StateBucket,
        machine: str,
        order: str | None,
        reason: str | None = None,
    ) -> None:
        data = StateData(bucket=bucket, since=since, reason=reason)
        self.emit("state", since, data, machine, order)

    def count(
        self,
        start: datetime,
        end: datetime,
        good: int,
        reject: int,
        machine: str,
        order: str | None,
        quality: str = "ok",
    ) -> None:
        data = CountData(
            good=good,
            reject=reject,
            total=good + reject,
            start=start,
            end=end,
            quality=quality,  # type: ignore[arg-type]
            ideal_cycle_time_s=10.0,
        )
        self.emit("count", end, data, machine, order)

    def order(
        self, order_id: str, start: datetime, end: datetime | None, machine: str, qty: int
    ) -> None:
        started = OrderData(order_id=order_id, quantity=qty, status="running", product="bolt")
        self.emit("order.started", start, started, machine, order_id)
        if end is not None:
            ended = started.model_copy(update={"status": "completed"})
            self.emit("order.ended", end, ended, machine, order_id)

    def downtime(
        self,
        downtime_id: str,
        start: datetime,
        end: datetime,
        machine: str,
        order: str,
        micro: bool,
        reason: tuple[str, str] | None = None,
    ) -> None:
        d = DowntimeData(downtime_id=downtime_id, start=start, category="unplanned")
        if reason is not None:
            d = d.model_copy(update={"reason_code": reason[0], "reason_text": reason[1]})
        self.emit("downtime.started", start, d, machine, order)
        ended = d.model_copy(
            update={
                "end": end,
                "duration_s": (end - start).total_seconds(),
                "micro_stop": micro,
                "loss": "availability",
            }
        )
        self.emit("downtime.ended", end, ended, machine, order)


def shift_events() -> list[Event]:
    p = Plant()
    shift = ShiftData(
        shift_id=SHIFT, calendar="cal", name="early", start=at(6), end=at(14), breaks=[]
    )
    for m in ("m1", "m2"):
        p.emit("shift.started", at(6), shift, m, None)
    # m1
    p.state(at(5, 50), "running", "m1", None)
    p.order("o-1", at(6), at(10), "m1", 1000)
    p.state(at(6), "running", "m1", "o-1")
    p.state(at(7), "down", "m1", "o-1")
    p.state(at(7, 20), "running", "m1", "o-1")
    p.state(at(7, 30), "down", "m1", "o-1")
    p.state(at(7, 31), "running", "m1", "o-1")
    p.downtime("m1-d1", at(7), at(7, 20), "m1", "o-1", micro=False)
    p.downtime("m1-d2", at(7, 30), at(7, 31), "m1", "o-1", micro=True)
    for h in range(6, 10):
        p.count(at(h), at(h + 1), 245, 5, "m1", "o-1", "gap" if h == 8 else "ok")
    held = HeldCountData(
        held_id="m1-good-1",
        counter="good",
        role="good_count",
        old_raw=1000,
        new_raw=1400,
        claimed=400,
        plausible_max=30,
        reason="spike",
        start=at(8, 29, 50),
        end=at(8, 30),
    )
    p.emit("count.held", at(8, 30), held, "m1", "o-1")
    p.order("o-2", at(10), at(14), "m1", 500)
    p.state(at(10), "running", "m1", "o-2")
    for h in range(10, 14):
        p.count(at(h), at(h + 1), 118, 2, "m1", "o-2")
    p.state(at(14), "not_scheduled", "m1", None)
    # m2
    p.order("o-1", at(6), at(10), "m2", 1000)
    p.state(at(6), "running", "m2", "o-1")
    p.state(at(9), "unknown", "m2", "o-1", reason="link down: no answer")
    p.state(at(9, 5), "running", "m2", "o-1")
    for h in range(6, 10):
        p.count(at(h), at(h + 1), 240, 0, "m2", "o-1", "gap" if h == 9 else "ok")
    p.state(at(10), "not_scheduled", "m2", None)
    return p.events


async def seed(dsn: str, *, timescaledb: str = "off") -> None:
    """Migrate `dsn` and store the shift; users clerk1 (clerk), boss (supervisor), eve (viewer)."""
    await migrate(store(dsn, timescaledb=timescaledb))
    conn = await asyncpg.connect(dsn)
    try:
        await write_batch(conn, [received(e) for e in shift_events()], [])
        for name, role in (("clerk1", "clerk"), ("boss", "supervisor"), ("eve", "viewer")):
            await conn.execute("INSERT INTO users (name, role) VALUES ($1, $2)", name, role)
    finally:
        await conn.close()
