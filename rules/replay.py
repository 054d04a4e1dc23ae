"""Replay: recorded readings through a fresh engine, with nothing stored.

`mesgw replay samples.jsonl --config candidate.toml` uses this to show what changed rules
would have made of a day: the events, and a summary (parts per machine and order, count
quality flags, downtimes, time per state). Ticks are rebuilt from the readings' own
timestamps, one per whole second, as the daemon sends them; ticks in the input are used too.
At the end each machine's open count interval is closed at its last time, so every part
counted is in the result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from common.events import CountData, DowntimeData, Draft, StateData
from common.sample import Link, Sample
from rules.engine import Engine
from rules.inputs import CommandResult, GatewayMark, OrderCommand, PlannedOrder, Tick

Replayable = Sample | Link | Tick | OrderCommand | GatewayMark


@dataclass
class Summary:
    """What a replay made, in the terms a production engineer checks."""

    # (machine, order or None) → good, reject, total
    parts: dict[tuple[str, str | None], list[int]] = field(default_factory=dict)
    # (machine, quality) → count records, parts
    quality: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    downtimes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # machine → bucket → seconds
    states: dict[str, dict[str, float]] = field(default_factory=dict)
    refused: list[CommandResult] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "start": None if self.start is None else _iso(self.start),
            "end": None if self.end is None else _iso(self.end),
            "parts": [
                {"machine": m, "order": o, "good": g, "reject": r, "total": t}
                for (m, o), (g, r, t) in sorted(self.parts.items(), key=_key)
            ],
            "quality": [
                {"machine": m, "quality": q, "records": n, "parts": p}
                for (m, q), (n, p) in sorted(self.quality.items())
            ],
            "downtimes": list(self.downtimes.values()),
            "states": {m: dict(sorted(b.items())) for m, b in sorted(self.states.items())},
            "refused": [
                {"machine": r.machine, "order_id": r.order_id, "error": r.error}
                for r in self.refused
            ],
        }

    def render(self) -> str:
        """A plain-text report."""
        lines = [f"replay {self.start and _iso(self.start)} .. {self.end and _iso(self.end)}"]
        lines.append("")
        lines.append(f"{'machine':<16} {'order':<16} {'good':>9} {'reject':>8} {'total':>9}")
        for (m, o), (g, r, t) in sorted(self.parts.items(), key=_key):
            lines.append(f"{m:<16} {o or '(no order)':<16} {g:>9} {r:>8} {t:>9}")
        flagged = [(k, v) for k, v in sorted(self.quality.items()) if k[1] != "ok"]
        if flagged:
            lines.append("")
            lines.append("flagged counts (clerk review)")
            for (m, q), (n, p) in flagged:
                lines.append(f"  {m:<16} {q:<8} {n:>5} records {p:>9} parts")
        lines.append("")
        lines.append(f"downtimes: {len(self.downtimes)}")
        for d in self.downtimes.values():
            end = d["end"] or "(open)"
            duration = "" if d["duration_s"] is None else f"{d['duration_s']:>9.1f} s"
            micro = " micro" if d["micro_stop"] else ""
            reason = d["reason_code"] or "unassigned"
            text = f" {d['reason_text']}" if d["reason_text"] else ""
            lines.append(
                f"  {d['downtime_id']:<36} {d['start']} .. {end} {duration}{micro} {reason}{text}"
            )
        lines.append("")
        lines.append("time per state (s)")
        for m, buckets in sorted(self.states.items()):
            shown = "  ".join(f"{b} {s:.0f}" for b, s in sorted(buckets.items()))
            lines.append(f"  {m:<16} {shown}")
        if self.refused:
            lines.append("")
            lines.append("refused commands")
            for refused in self.refused:
                lines.append(f"  {refused.machine} {refused.order_id}: {refused.error}")
        return "\n".join(lines)


@dataclass
class ReplayResult:
    drafts: list[Draft]
    results: list[CommandResult]
    summary: Summary


def replay(
    items: Iterable[Replayable],
    engine: Engine,
    *,
    planned: Sequence[PlannedOrder] = (),
    until: datetime | None = None,
    tick_s: float = 1.0,
    flush: bool = True,
) -> ReplayResult:
    """Run readings and commands through `engine` (fresh, or restored from a snapshot);
    `flush=False` leaves the open count intervals open (to continue with more readings)."""
    if planned:
        engine.plan(planned)
    drafts: list[Draft] = []
    results: list[CommandResult] = []
    next_tick: float | None = None
    first: datetime | None = None
    last: datetime | None = None

    def ticks_to(t: float) -> None:
        nonlocal next_tick
        if next_tick is None:
            next_tick = math.ceil(t / tick_s) * tick_s
        while next_tick <= t:
            drafts.extend(engine.feed(Tick(datetime.fromtimestamp(next_tick, UTC))))
            next_tick += tick_s

    stopped = False
    for item in _instant_order(items, engine):
        ts = item.ts
        first = ts if first is None else first
        last = ts if last is None or ts > last else last
        if isinstance(item, GatewayMark) and item.kind == "start":
            stopped = False  # no clock ran while the gateway was away
            next_tick = None
        if not stopped:
            ticks_to(ts.timestamp())
        if isinstance(item, OrderCommand):
            result, made = engine.command(item)
            results.append(result)
            drafts.extend(made)
        elif isinstance(item, GatewayMark):
            # As the gateway did: a stop closes everything at its time; a start goes on from
            # the saved state, and the time in between is unknown (restart).
            if item.kind == "stop":
                drafts.extend(engine.stop(ts))
                stopped = True
            else:
                engine.restart()
        else:
            drafts.extend(engine.feed(item))
    if until is not None:
        ticks_to(until.timestamp())
        # Nothing more will come: the machines' time reaches `until` itself (live, the clock
        # runs `late_sample_s` ahead of them).
        drafts.extend(engine.feed(Tick(until + timedelta(seconds=engine.late_s))))
        last = until if last is None or until > last else last
    if flush:  # parts counted in the last, still open interval belong in the result too
        drafts.extend(engine.flush())
    summary = summarize(drafts, first, last)
    summary.refused = [r for r in results if not r.ok]
    return ReplayResult(drafts, results, summary)


def _instant_order(items: Iterable[Replayable], engine: Engine) -> Iterator[Replayable]:
    """Commands and gateway marks pass through; readings go in the engine's instant order
    (as live)."""
    run: list[Sample | Link | Tick] = []
    for item in items:
        if isinstance(item, OrderCommand | GatewayMark):
            if run:
                yield from engine.in_instant_order(run)
                run.clear()
            yield item
        else:
            run.append(item)
            if len(run) >= 1024 and type(item) is not Sample:
                yield from engine.in_instant_order(run)
                run.clear()
    if run:
        yield from engine.in_instant_order(run)


def summarize(drafts: Sequence[Draft], start: datetime | None, end: datetime | None) -> Summary:
    summary = Summary(start=start, end=end)
    open_states: dict[str, tuple[str, datetime]] = {}
    for d in drafts:
        data = d.data
        if isinstance(data, CountData):
            parts = summary.parts.setdefault((d.machine, d.order), [0, 0, 0])
            parts[0] += data.good
            parts[1] += data.reject
            parts[2] += data.total
            flags = summary.quality.setdefault((d.machine, data.quality), [0, 0])
            flags[0] += 1
            flags[1] += data.total
        elif isinstance(data, DowntimeData):
            summary.downtimes[data.downtime_id] = {
                "downtime_id": data.downtime_id,
                "machine": d.machine,
                "order": d.order,
                "shift": d.shift,
                "start": _iso(data.start),
                "end": None if data.end is None else _iso(data.end),
                "duration_s": data.duration_s,
                "reason_code": data.reason_code,
                "reason_text": data.reason_text,
                "category": data.category,
                "planned": data.planned,
                "micro_stop": data.micro_stop,
                "loss": data.loss,
            }
        elif isinstance(data, StateData):
            previous = open_states.get(d.machine)
            if previous is not None:
                _add_state(summary, d.machine, previous[0], previous[1], data.since)
            open_states[d.machine] = (data.bucket, data.since)
    if end is not None:
        for machine, (bucket, since) in open_states.items():
            _add_state(summary, machine, bucket, since, end)
    return summary


def _add_state(summary: Summary, machine: str, bucket: str, a: datetime, b: datetime) -> None:
    seconds = max(0.0, (b - a).total_seconds())
    buckets = summary.states.setdefault(machine, {})
    buckets[bucket] = buckets.get(bucket, 0.0) + seconds


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _key(item: tuple[tuple[str, str | None], list[int]]) -> tuple[str, str]:
    (machine, order), _ = item
    return machine, order or ""
