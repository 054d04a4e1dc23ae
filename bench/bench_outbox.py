"""Outbox throughput with durability on: concurrent and batch appends, the publisher's drain."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Literal

from bench.table import render
from gateway.config import OutboxSection
from gateway.events import CountData, Draft, now_utc
from gateway.outbox import Outbox

TARGET = ">= 20000"
APPENDERS = 64
BATCH = 100
BATCH_APPENDERS = 8
DRAIN_EVENTS = 50_000
PEEK_LIMIT = 1000

Sync = Literal["full", "normal"]
SYNCS: tuple[Sync, ...] = ("full", "normal")


def _draft() -> Draft:
    end = now_utc()
    data = CountData(good=7, reject=1, total=8, start=end - timedelta(seconds=1), end=end)
    return Draft(type="count", ts=end, area="press", line="l1", machine="p-01", data=data)


def _outbox(directory: Path, name: str, synchronous: Sync) -> Outbox:
    # Room for every event of the run, so the bound never throttles what is measured.
    cfg = OutboxSection(
        path=directory / f"{name}.db", synchronous=synchronous, max_events=100_000_000
    )
    return Outbox(cfg, gateway_id="bench", site="bench")


async def _append_rate(
    directory: Path, synchronous: Sync, seconds: float, *, tasks: int, size: int
) -> float:
    box = _outbox(directory, f"append-{synchronous}-{tasks}x{size}", synchronous)
    await box.open()
    drafts = [_draft() for _ in range(size)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    appended = 0

    async def appender() -> None:
        nonlocal appended
        while loop.time() < deadline:
            events = await box.append(drafts)
            # Count after the await: `appended += len(await ...)` would read a stale total.
            appended += len(events)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(appender() for _ in range(tasks)))
        elapsed = time.perf_counter() - start
    finally:
        await box.close()
    return appended / elapsed


async def _latency_p99_ms(directory: Path, synchronous: Sync, seconds: float) -> float:
    box = _outbox(directory, f"latency-{synchronous}", synchronous)
    await box.open()
    draft = _draft()
    samples: list[float] = []
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await box.append([draft])
            samples.append(time.perf_counter() - start)
    finally:
        await box.close()
    samples.sort()
    return samples[int(len(samples) * 0.99)] * 1000


async def _drain_rate(directory: Path, synchronous: Sync) -> float:
    """Peek and remove in pages as the publisher does after PUBACKs."""
    box = _outbox(directory, f"drain-{synchronous}", synchronous)
    await box.open()
    try:
        drafts = [_draft() for _ in range(BATCH * 10)]
        await asyncio.gather(*(box.append(drafts) for _ in range(DRAIN_EVENTS // len(drafts))))
        after = 0
        drained = 0
        start = time.perf_counter()
        while rows := await box.peek(after, PEEK_LIMIT):
            after = rows[-1].id
            await box.remove(r.id for r in rows)
            drained += len(rows)
        elapsed = time.perf_counter() - start
    finally:
        await box.close()
    return drained / elapsed


async def _run(seconds: float) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="mesgw-bench-") as tmp:
        directory = Path(tmp)
        for sync in SYNCS:
            rate = await _append_rate(directory, sync, seconds, tasks=APPENDERS, size=1)
            rows.append(
                {
                    "bench": f"outbox append, {APPENDERS} appenders x 1 draft (synchronous={sync})",
                    "value": round(rate, 1),
                    "unit": "events/s",
                    "target": TARGET,
                }
            )
        for sync in SYNCS:
            rate = await _append_rate(directory, sync, seconds, tasks=BATCH_APPENDERS, size=BATCH)
            rows.append(
                {
                    "bench": f"outbox append, {BATCH_APPENDERS} appenders x {BATCH} drafts"
                    f" (synchronous={sync})",
                    "value": round(rate, 1),
                    "unit": "events/s",
                    "target": TARGET,
                }
            )
        p99 = await _latency_p99_ms(directory, "full", min(seconds, 1.0))
        rows.append(
            {
                "bench": "outbox append latency p99, 1 appender (synchronous=full)",
                "value": round(p99, 2),
                "unit": "ms",
                "target": "-",
            }
        )
        rate = await _drain_rate(directory, "full")
        rows.append(
            {
                "bench": f"outbox drain, peek {PEEK_LIMIT} + remove (synchronous=full)",
                "value": round(rate, 1),
                "unit": "events/s",
                "target": TARGET,
            }
        )
    return rows


def run(seconds: float = 3.0) -> list[dict[str, object]]:
    """Measure the outbox in a temporary directory; one row per figure."""
    return asyncio.run(_run(seconds))


if __name__ == "__main__":
    print(render(run(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)))
