"""Rules throughput on one core: 100 machines polled every 100 ms, and memory per machine.

Each machine has good and reject counters (32-bit) and a PackML state tag, an ideal cycle
time of 0.5 s and a two-shift calendar with breaks. Every poll reads all three tags; the
good counter moves every fifth poll, the reject counter rarely, and every machine stops for
10 s every minute — so most samples repeat the last value, as on a real line. Ticks
arrive once a second. Samples are built beforehand: only the rules are timed.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from datetime import time as clock

from bench.table import render
from connectors.sample import Sample
from gateway.events import CountData, Draft
from rules.config import RulesSection, ShiftCalendar, ShiftPattern
from rules.engine import Engine
from rules.inputs import Tick
from rules.spec import MachineSpec, PlantRules, TagSpec

MACHINES = 100
POLL_S = 0.1
SECONDS = 120
TARGET = ">= 200000"
T0 = datetime(2026, 3, 2, 5, 58, tzinfo=UTC)  # across the early shift's start (06:00 UTC)


def _plant() -> PlantRules:
    shifts = ShiftCalendar(
        shifts=[
            ShiftPattern(
                name="early",
                days=["mon-fri"],
                start=clock(6),
                end=clock(14),
                breaks=[{"start": clock(9), "end": clock(9, 15)}],  # type: ignore[list-item]
            ),
            ShiftPattern(name="late", days=["mon-fri"], start=clock(14), end=clock(22)),
        ]
    )
    return PlantRules(rules=RulesSection(), shifts={"default": shifts})


def _specs() -> list[MachineSpec]:
    tags = {
        "good": TagSpec("good_count", 1 << 32),
        "reject": TagSpec("reject_count", 1 << 32),
        "state": TagSpec("state"),
    }
    return [
        MachineSpec(
            f"m{i:03d}", "a", "l", tags, ideal_cycle_time_s=0.5, state_table="packml-packtags"
        )
        for i in range(MACHINES)
    ]


def _inputs(shared_ts: bool, busy: bool = False) -> tuple[list[Sample | Tick], int]:
    """Polls of every machine in time order, a tick each whole second; and the parts made."""
    out: list[Sample | Tick] = []
    polls = int(SECONDS / POLL_S)
    good = [1000 * i for i in range(MACHINES)]
    reject = [0] * MACHINES
    first: list[int] = []  # the first reading is a baseline, not production
    for p in range(polls):
        base = T0 + timedelta(seconds=p * POLL_S)
        if p % int(1 / POLL_S) == 0:
            out.append(Tick(base))
        for i in range(MACHINES):
            ts = base + timedelta(microseconds=i * 50)
            second = p * POLL_S + i * 0.6  # each machine stops at its own time
            stopped = second % 60 < 10
            if not stopped and (busy or p % 5 == i % 5):
                good[i] += 1
                if busy or (p + i) % 97 == 0:
                    reject[i] += 1
            state = 11 if stopped else 6  # Held / Execute
            stamps = (ts, ts, ts) if shared_ts else (ts, ts + timedelta(0), ts + timedelta(0))
            out.append(Sample(f"m{i:03d}", "good", good[i], stamps[0]))
            out.append(Sample(f"m{i:03d}", "reject", reject[i], stamps[1]))
            out.append(Sample(f"m{i:03d}", "state", state, stamps[2]))
        if p == 0:
            first = list(good)
    # A last tick past the final count interval, so every part made is in an event.
    out.append(Tick(T0 + timedelta(seconds=SECONDS + 20)))
    return out, sum(good) - sum(first)


def _rate(inputs: list[Sample | Tick], batched: bool) -> tuple[float, list[Draft]]:
    engine = Engine(_specs(), _plant())
    samples = sum(1 for x in inputs if isinstance(x, Sample))
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        if batched:
            made = engine.feed_many(inputs)
        else:
            made = []
            feed = engine.feed
            for item in inputs:
                drafts = feed(item)
                if drafts:
                    made += drafts
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    return samples / elapsed, made


def _memory(inputs: list[Sample | Tick]) -> tuple[float, float, int]:
    """Bytes per machine (engine built and run), snapshot ms and size for all machines."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine = Engine(_specs(), _plant())
    engine.feed_many(inputs)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    started = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        text = json.dumps(engine.snapshot(), separators=(",", ":"))
    snapshot_ms = (time.perf_counter() - started) / rounds * 1000
    return held / MACHINES, snapshot_ms, len(text)


def run() -> list[dict[str, object]]:
    shared, parts = _inputs(shared_ts=True)
    own, _ = _inputs(shared_ts=False)
    busy, _ = _inputs(shared_ts=True, busy=True)
    rate, made = max((_rate(shared, batched=False) for _ in range(3)), key=lambda r: r[0])
    rate_many, _ = max((_rate(shared, batched=True) for _ in range(3)), key=lambda r: r[0])
    rate_own, _ = max((_rate(own, batched=False) for _ in range(3)), key=lambda r: r[0])
    rate_busy, _ = max((_rate(busy, batched=False) for _ in range(3)), key=lambda r: r[0])
    counted = sum(d.data.good for d in made if isinstance(d.data, CountData))
    per_machine, snapshot_ms, snapshot_bytes = _memory(shared)
    samples = sum(1 for x in shared if isinstance(x, Sample))
    return [
        {
            "bench": f"rules, {MACHINES} machines @{POLL_S * 1000:.0f} ms, feed() per sample",
            "value": rate,
            "unit": "samples/s",
            "target": TARGET,
        },
        {
            "bench": "rules, same, feed_many() per batch",
            "value": rate_many,
            "unit": "samples/s",
            "target": TARGET,
        },
        {
            "bench": "rules, same, a timestamp object per sample",
            "value": rate_own,
            "unit": "samples/s",
            "target": TARGET,
        },
        {
            "bench": "rules, same, both counters move at every poll",
            "value": rate_busy,
            "unit": "samples/s",
            "target": "",
        },
        {
            "bench": f"rules, events made from {samples:,} samples ({SECONDS} s of a line)",
            "value": float(len(made)),
            "unit": "events",
            "target": "",
        },
        {
            "bench": "rules, good parts in count events / parts made",
            "value": f"{counted:,} / {parts:,}",
            "unit": "parts",
            "target": "equal",
        },
        {
            "bench": "rules, memory per machine (engine after the run)",
            "value": per_machine / 1024,
            "unit": "KiB",
            "target": "",
        },
        {
            "bench": f"rules, snapshot() + JSON of {MACHINES} machines",
            "value": snapshot_ms,
            "unit": "ms",
            "target": "",
        },
        {
            "bench": f"rules, snapshot size for {MACHINES} machines",
            "value": snapshot_bytes / 1024,
            "unit": "KiB",
            "target": "",
        },
    ]


if __name__ == "__main__":
    print(render(run()))
    sys.exit(0)
