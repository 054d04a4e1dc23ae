"""Properties of the rules that must hold for any input, checked with hypothesis.

- Counter deltas sum to the parts made, whatever wraps and (distinguishable) resets occur.
- Every part is counted for exactly one order: per-order sums equal those of a reference
  model, and no count interval of one order overlaps another order's.
- A gateway restart at any point (snapshot → JSON → restore) neither loses nor double-counts.
- A shift calendar's segments tile time.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sample import Link, Sample
from gateway.events import CountData, Draft
from rules.calendar import Calendar
from rules.config import RulesSection, ShiftCalendar, ShiftPattern
from rules.engine import Engine
from rules.inputs import OrderCommand, Tick
from rules.spec import MachineSpec, PlantRules, TagSpec

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
RATE = 5.0  # parts/s at most
RULES = RulesSection(count_interval_s=10, min_state_s=0, micro_stop_s=0, late_sample_s=0)


def engine(modulus: int, *, resettable: bool = True, two: bool = False) -> Engine:
    tags = {"total": TagSpec("total_count", modulus, resettable)}
    if two:
        tags["reject"] = TagSpec("reject_count", modulus, resettable)
    spec = MachineSpec(
        "m", "a", "l", tags, ideal_cycle_time_s=1 / RATE, max_rate_per_s=RATE, down_after_s=30
    )
    return Engine([spec], PlantRules(rules=RULES))


def counts(drafts: list[Draft]) -> list[tuple[Draft, CountData]]:
    return [(d, d.data) for d in drafts if isinstance(d.data, CountData)]


@dataclass
class Step:
    dt: float  # seconds since the previous reading
    parts: int  # made in between
    reset: bool  # the PLC reset its counter in between (then counted `parts` from 0)


@st.composite
def steps(draw: st.DrawFn, n: int = 60) -> list[Step]:
    out = []
    for _ in range(draw(st.integers(1, n))):
        dt = draw(st.floats(0.2, 30.0, allow_nan=False)).__round__(3)
        parts = draw(st.integers(0, int(RATE * dt)))
        out.append(Step(dt, parts, draw(st.booleans()) and draw(st.booleans())))
    return out


@settings(max_examples=150, deadline=None)
@given(
    modulus=st.sampled_from([100, 1000, 1 << 16, 1 << 32]),
    start=st.integers(0, (1 << 32) - 1),
    plan=steps(),
)
def test_deltas_sum_to_the_parts_made(modulus: int, start: int, plan: list[Step]) -> None:
    eng = engine(modulus)
    drafts: list[Draft] = []
    made = 0
    value = start % modulus
    ts = T0
    drafts += eng.feed(Sample("m", "total", value, ts))
    for step in plan:
        ts += timedelta(seconds=step.dt)
        # A whole turn of the counter between two readings leaves no trace: physically
        # undetectable, so the plan makes fewer parts than the modulus per reading.
        step.parts = min(step.parts, modulus - 1)
        allowed = RATE * (step.dt + 1.0) + 1
        if step.reset and step.parts < value and modulus - value + step.parts > allowed:
            value = step.parts
        else:
            value = (value + step.parts) % modulus
        made += step.parts
        drafts += eng.feed(Sample("m", "total", value, ts))
        drafts += eng.feed(Tick(ts))
    drafts += eng.feed(Tick(ts + timedelta(seconds=20)))
    records = counts(drafts)
    assert sum(c.total for _, c in records) == made
    assert all(c.quality in ("ok", "wrap", "reset") for _, c in records)
    assert all(c.good + c.reject == c.total for _, c in records)


@st.composite
def order_scripts(draw: st.DrawFn, links: bool = False) -> list[tuple[float, str, object]]:
    """Readings and order commands at increasing times: (seconds from T0, kind, payload);
    with `links`, the link to the machine also drops and returns."""
    t = 0.0
    script: list[tuple[float, str, object]] = []
    kinds = ["parts", "parts", "parts", "start", "stop", "tick"]
    if links:
        kinds += ["down", "up"]
    for _ in range(draw(st.integers(1, 80))):
        step = round(draw(st.floats(0.1, 20.0, allow_nan=False)), 3)
        t += step
        kind = draw(st.sampled_from(kinds))
        if kind == "parts":
            # No faster than the machine can make them: a faster jump is held, not counted.
            most = min(5, int(RATE * step))
            payload: object = (draw(st.integers(0, most)), draw(st.integers(0, min(2, most))))
        elif kind == "start":
            payload = draw(st.sampled_from(["A", "B", "C"]))
        else:
            payload = None
        script.append((t, kind, payload))
    return script


def play(
    eng: Engine, script: list[tuple[float, str, object]], split: int | None = None
) -> tuple[list[Draft], dict[str | None, int], Engine]:
    """Run a script; with `split`, restart the gateway (snapshot/restore) before that step.
    Returns the drafts, the reference parts per order, and the final engine."""
    drafts: list[Draft] = []
    expected: dict[str | None, int] = {}
    active: str | None = None
    total = reject = 0
    up = True
    drafts += eng.feed(Sample("m", "total", total, T0))
    drafts += eng.feed(Sample("m", "reject", reject, T0))
    clock = 0
    for i, (t, kind, payload) in enumerate(script):
        ts = T0 + timedelta(seconds=t)
        while clock + 1 <= t:  # the daemon's clock ticks every second, whatever happens
            clock += 1
            drafts += eng.feed(Tick(T0 + timedelta(seconds=clock)))
        if i == split:
            saved = json.loads(json.dumps(eng.snapshot()))
            fresh = engine(1 << 16, two=True)
            fresh.restore(saved)
            eng = fresh
        if kind == "parts":
            good, bad = payload  # type: ignore[misc]
            total += good + bad
            reject += bad
            if up:  # while the link is down the PLC counts on, unseen
                drafts += eng.feed(Sample("m", "total", total, ts))
                drafts += eng.feed(Sample("m", "reject", reject, ts))
            expected[active] = expected.get(active, 0) + good + bad
        elif kind in ("down", "up"):
            up = kind == "up"
            drafts += eng.feed(Link("m", up, ts))
            if up:
                drafts += eng.feed(Sample("m", "total", total, ts))
                drafts += eng.feed(Sample("m", "reject", reject, ts))
        elif kind == "start":
            result, made = eng.command(OrderCommand("m", "start", ts, "cli", order_id=payload))  # type: ignore[arg-type]
            drafts += made
            if result.ok:
                active = payload  # type: ignore[assignment]
        elif kind == "stop":
            result, made = eng.command(OrderCommand("m", "stop", ts, "cli"))
            drafts += made
            if result.ok:
                active = None
        else:
            drafts += eng.feed(Tick(ts))
    end = T0 + timedelta(seconds=(script[-1][0] if script else 0) + 60)
    if not up:
        drafts += eng.feed(Link("m", True, end))
        drafts += eng.feed(Sample("m", "total", total, end))
        drafts += eng.feed(Sample("m", "reject", reject, end))
    drafts += eng.feed(Tick(end + timedelta(seconds=20)))
    return drafts, {k: v for k, v in expected.items() if v}, eng


def per_order(drafts: list[Draft]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for d, c in counts(drafts):
        out[d.order] = out.get(d.order, 0) + c.total
    return {k: v for k, v in out.items() if v}


def order_periods(drafts: list[Draft]) -> dict[str, list[tuple[datetime, datetime]]]:
    periods: dict[str, list[tuple[datetime, datetime]]] = {}
    opened: dict[str, datetime] = {}
    for d in drafts:
        if d.type == "order.started":
            opened[d.order or ""] = d.ts
        elif d.type == "order.ended":
            periods.setdefault(d.order or "", []).append((opened.pop(d.order or ""), d.ts))
    for oid, since in opened.items():
        periods.setdefault(oid, []).append((since, datetime.max.replace(tzinfo=UTC)))
    return periods


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=order_scripts())
def test_every_part_counted_for_exactly_one_order(script: list) -> None:
    drafts, expected, _ = play(engine(1 << 16, two=True), script)
    assert per_order(drafts) == expected
    periods = order_periods(drafts)
    for d, c in counts(drafts):
        if d.order is None:
            continue
        # The interval lies within one running period of its order, so no other order's.
        assert any(a <= c.start and c.end <= b for a, b in periods[d.order]), (d, periods)
    intervals = sorted((c.start, c.end) for _, c in counts(drafts))
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end <= start  # count intervals never overlap: no part in two records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=order_scripts(links=True), where=st.floats(0, 1))
def test_a_restart_anywhere_loses_and_doubles_nothing(script: list, where: float) -> None:
    split = int(where * len(script))
    straight, expected, _ = play(engine(1 << 16, two=True), script)
    restarted, _, _ = play(engine(1 << 16, two=True), script, split=split)
    made = sum(expected.values())
    assert sum(c.total for _, c in counts(straight)) == made
    assert sum(c.total for _, c in counts(restarted)) == made
    assert sum(c.reject for _, c in counts(restarted)) == sum(c.reject for _, c in counts(straight))


@settings(max_examples=100, deadline=None)
@given(
    offset_h=st.floats(0, 24 * 21, allow_nan=False),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "UTC"]),
)
def test_calendar_segments_tile_time(offset_h: float, zone: str) -> None:
    config = ShiftCalendar(
        shifts=[
            ShiftPattern(
                name="early",
                days=["mon-fri"],
                start=time(6),
                end=time(14),
                breaks=[{"start": time(9), "end": time(9, 15)}],  # type: ignore[list-item]
            ),
            ShiftPattern(name="night", days=["fri", "sat"], start=time(22), end=time(6)),
        ],
        exceptions=[{"date": date(2026, 3, 4), "shifts": []}],  # type: ignore[list-item]
    )
    cal = Calendar("c", config, zone)
    t = datetime(2026, 3, 1, tzinfo=UTC).timestamp() + offset_h * 3600
    seg = cal.segment_at(t)
    assert seg.start <= t < seg.end
    following = cal.segment_at(seg.end)
    assert following.start == seg.end
    if seg.kind != "off":
        assert seg.shift is not None
        assert seg.shift.start <= t < seg.shift.end
