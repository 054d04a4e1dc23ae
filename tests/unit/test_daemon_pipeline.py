"""The rules stage between sources and the outbox: order kept, nothing dropped when full."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.config import OutboxSection
from gateway.daemon import Pipeline
from gateway.events import CountData, Draft
from gateway.outbox import Outbox


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
