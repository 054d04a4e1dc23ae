"""The browser tests' data: the simulated line's recorded day, replayed into a real store.

`make demo`'s sample log (tests/rules/golden/demo: the simulated line of
deploy/examples/simulator.toml read by `mesgw run`) goes through the rules as `mesgw replay`
does, and the events are written to the store as the recorder writes them. The demo ends
with its orders still running and without a held count, so the day is closed the way a
clerk's day is: each order ends at the last reading, and the filler's counter reports one
jump the rules hold (as they would for a PLC that came back at a preset).
"""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path

import asyncpg

from gateway.config import load_config
from gateway.events import Draft, HeldCountData, OrderData, uuid7
from gateway.orders.schedule import read_schedule
from gateway.pipeline import build_rules
from gateway.samples import from_line
from gateway.store import write_batch
from gateway.testing import received
from rules.replay import replay

DEMO = Path(__file__).resolve().parents[1] / "rules" / "golden" / "demo"
HELD_ID = "filler-1-good-held"


def demo_drafts() -> list[Draft]:
    settings = load_config(DEMO / "config.toml")
    engine = build_rules(settings)
    with gzip.open(DEMO / "samples.jsonl.gz", "rt", encoding="utf-8") as fh:
        items = [from_line(line) for line in fh if line.strip()]
    drafts = list(replay(items, engine, planned=read_schedule(DEMO / "schedule.csv")).drafts)
    end = max(d.ts for d in drafts)
    running: dict[str, Draft] = {}
    for d in drafts:
        if d.type == "order.started":
            running[d.machine] = d
        elif d.type == "order.ended":
            running.pop(d.machine, None)
    closing = []
    for machine, started in running.items():
        data = started.data
        assert isinstance(data, OrderData)
        ended = data.model_copy(update={"status": "completed"})
        closing.append(
            Draft(
                "order.ended",
                end,
                started.area,
                started.line,
                machine,
                ended,
                order=data.order_id,
                shift=started.shift,
            )
        )
    filler = running["filler-1"]
    held = HeldCountData(
        held_id=HELD_ID,
        counter="good",
        role="good_count",
        old_raw=1_200,
        new_raw=66_200,
        claimed=65_000,
        plausible_max=12,
        reason="spike",
        start=end - timedelta(seconds=5),
        end=end - timedelta(seconds=1),
    )
    closing.insert(
        0,
        Draft(
            "count.held",
            end - timedelta(seconds=1),
            filler.area,
            filler.line,
            "filler-1",
            held,
            order=filler.order,
            shift=filler.shift,
        ),
    )
    return drafts + closing


async def load(dsn: str) -> list[Draft]:
    """Write the recorded day into the (migrated) store at `dsn`; returns its drafts."""
    drafts = demo_drafts()
    events = [
        d.seal(event_id=uuid7(), seq=i + 1, gateway="demo-gw", site="demo")
        for i, d in enumerate(drafts)
    ]
    conn = await asyncpg.connect(dsn)
    try:
        await write_batch(conn, [received(e) for e in events], [])
    finally:
        await conn.close()
    return drafts
