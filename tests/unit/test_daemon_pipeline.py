"""The rules stage between sources and the outbox: order kept, nothing dropped when full."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.sample import Reading, Sample
from gateway.config import OutboxSection
from gateway.events import CountData, Draft
from gateway.orders.desk import ScheduleRejected
from gateway.outbox import Outbox
from gateway.pipeline import Pipeline
from rules.inputs import CommandResult, OrderCommand, PlannedOrder, Tick


def draft(good: int) -> Draft:
    now = datetime.now(UTC)
    data = CountData(good=good, reject=0, total=good, start=now - timedelta(seconds=1), end=now)
    return Draft("count", now, "a1", "l1", "m1", data)


async def test_a_full_outbox_holds_the_batch_until_there_is_room(tmp_path: Path) -> None:
    cfg = OutboxSection(path=tmp_path / "o.db", max_events=1000, full_wait_s=0.05)
    outbox = Outbox(cfg, gateway_id="gw", site="s")
    await outbox.open()
    try:
        await outbox.append([draft(0) for _ in range(1000)])
        pipeline = Pipeline(outbox)
        rules = asyncio.create_task(pipeline.run_rules())
        await pipeline.emit([draft(7), draft(8)])
        await asyncio.sleep(0.3)  # several OutboxFull rounds
        assert not rules.done(), "the rules stage must survive a full outbox"
        rows = await outbox.peek(0, 1000)
        await outbox.remove(r.id for r in rows[:10])
        await pipeline.close()
        await asyncio.wait_for(rules, 10)
        tail = await outbox.peek(rows[-1].id, 10)
        assert [r.event.data.good for r in tail] == [7, 8]  # type: ignore[union-attr]
    finally:
        await outbox.close()


class TallyRules:
    """A minimal deterministic rules double: one count event per 'good' sample, a tally as
    state; raises on a sample tagged 'boom'. The real engine is tested in tests/rules."""

    def __init__(self) -> None:
        self.tally = 0
        self.planned: list[str] = []

    def feed(self, item: Reading | Tick) -> list[Draft]:
        if isinstance(item, Tick) or not isinstance(item, Sample):
            return []
        if item.tag == "boom":
            raise RuntimeError("defect")
        self.tally += 1
        return [draft(self.tally)]

    def command(self, cmd: OrderCommand) -> tuple[CommandResult, list[Draft]]:
        if cmd.order_id is None:
            return CommandResult(ok=False, machine=cmd.machine, error="order_id required"), []
        return CommandResult(ok=True, machine=cmd.machine, order_id=cmd.order_id), [draft(0)]

    def plan(self, orders: Sequence[PlannedOrder]) -> int:
        if any(not o.order_id for o in orders):
            raise ValueError("order_id missing")
        self.planned += [o.order_id for o in orders]
        return len(orders)

    def orders(self) -> list[dict[str, Any]]:
        return [{"order_id": o, "status": "planned", "machine": None} for o in self.planned]

    def in_instant_order(self, items: Iterable[Reading | Tick]) -> Iterator[Reading | Tick]:
        return iter(items)

    def stop(self, ts: datetime) -> list[Draft]:
        return [draft(1000 + self.tally)]  # stands for the open interval closed at stop

    def snapshot(self) -> dict[str, Any]:
        return {"tally": self.tally, "planned": self.planned}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.tally = snapshot["tally"]
        self.planned = snapshot["planned"]


def sample(tag: str = "good") -> Sample:
    return Sample("m1", tag, 1, datetime.now(UTC))


async def test_rules_state_is_committed_with_events_and_restored(tmp_path: Path) -> None:
    cfg = OutboxSection(path=tmp_path / "o.db")
    outbox = Outbox(cfg, gateway_id="gw", site="s")
    await outbox.open()
    try:
        rules = TallyRules()
        pipeline = Pipeline(outbox, rules)
        assert not await pipeline.restore()
        task = asyncio.create_task(pipeline.run_rules())
        await pipeline.readings([sample(), sample("boom"), sample()])
        now = datetime.now(UTC)
        start = OrderCommand("m1", "start", now, "cli", order_id="WO-1")
        assert (await pipeline.submit(start)).ok
        # The reply comes after the commit: the command's event is already in the outbox.
        assert [r.event.data.good for r in await outbox.peek(0, 10)] == [1, 2, 0]  # type: ignore[union-attr]
        bad = await pipeline.submit(OrderCommand("m1", "start", now, "cli"))
        assert (bad.ok, bad.error) == (False, "order_id required")
        assert await pipeline.plan([PlannedOrder("WO-2"), PlannedOrder("WO-3")]) == 2
        with pytest.raises(ScheduleRejected, match="order_id missing"):
            await pipeline.plan([PlannedOrder("WO-4"), PlannedOrder("")])
        assert [o["order_id"] for o in pipeline.list_orders()] == ["WO-2", "WO-3"]
        await pipeline.close()
        await asyncio.wait_for(task, 5)
        assert pipeline.rule_errors == 1
        assert [r.event.data.good for r in await outbox.peek(0, 10)][-1] == 1002  # type: ignore[union-attr]
    finally:
        await outbox.close()
    await outbox.open()
    try:
        again = TallyRules()
        assert await Pipeline(outbox, again).restore()
        assert (again.tally, again.planned) == (2, ["WO-2", "WO-3"])
    finally:
        await outbox.close()
