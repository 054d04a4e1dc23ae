"""Replay: recorded readings through a fresh engine, ticks rebuilt, a summary for the engineer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sample import Sample
from gateway.samples import SampleLog, read_log
from rules.config import RulesSection, StateTableConfig
from rules.engine import Engine
from rules.inputs import GatewayMark, OrderCommand, Tick
from rules.replay import replay
from rules.spec import MachineSpec, PlantRules, TagSpec

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_replay_summarises_parts_downtime_and_states() -> None:
    spec = MachineSpec(
        "m1",
        "a",
        "l",
        {"good": TagSpec("good_count", 1 << 16), "reject": TagSpec("reject_count", 1 << 16)},
        ideal_cycle_time_s=1.0,
        down_after_s=10,
    )
    engine = Engine([spec], PlantRules(rules=RulesSection(count_interval_s=60, min_state_s=0)))
    items: list = [Sample("m1", "good", 65530, at(0)), Sample("m1", "reject", 0, at(0))]
    items.append(OrderCommand("m1", "start", at(1), "cli", order_id="WO-1"))
    for s in range(2, 21, 2):
        items.append(Sample("m1", "good", (65530 + s) % 65536, at(s)))
    items.append(Sample("m1", "reject", 2, at(20)))
    items.append(OrderCommand("m1", "stop", at(45), "cli", order_id="WO-9"))  # refused
    for s in range(50, 61, 5):
        items.append(Sample("m1", "good", (65530 + 20 + s - 45) % 65536, at(s)))

    result = replay(items, engine, until=at(120))
    summary = result.summary
    assert summary.parts == {("m1", "WO-1"): [35, 2, 37]}
    assert summary.quality == {("m1", "wrap"): [1, 22], ("m1", "ok"): [3, 15]}
    assert [
        (d["start"][11:19], d["end"] and d["end"][11:19]) for d in summary.downtimes.values()
    ] == [
        ("08:00:20", "08:00:50"),
        ("08:01:00", None),
    ]
    assert [r.error for r in summary.refused] == ["order WO-9 is not running on m1 (running: WO-1)"]
    assert summary.states["m1"] == {"unknown": 1.0, "running": 19.0 + 10.0, "down": 30.0 + 60.0}
    text = summary.render()
    assert "WO-1" in text and "wrap" in text and "unassigned" in text and "(open)" in text
    assert summary.to_json()["parts"] == [
        {"machine": "m1", "order": "WO-1", "good": 35, "reject": 2, "total": 37}
    ]


# -- live = replay ----------------------------------------------------------------------------

LIVE_RULES = RulesSection(count_interval_s=10, min_state_s=2, micro_stop_s=30, late_sample_s=2)
CODES = StateTableConfig(codes={"1": "running", "2": "down", "5": "starved"})


def live_machine() -> MachineSpec:
    tags = {
        "good": TagSpec("good_count", 1 << 16),
        "state": TagSpec("state"),
        "reason": TagSpec("reason"),
    }
    return MachineSpec(
        "m1", "a", "l", tags, ideal_cycle_time_s=0.5, down_after_s=20, state_table="codes"
    )


def live_engine() -> Engine:
    return Engine([live_machine()], PlantRules(rules=LIVE_RULES, state_tables={"codes": CODES}))


@st.composite
def plc_days(draw: st.DrawFn) -> tuple[list[tuple[float, int, int, int]], list[float], int, int]:
    """What the PLC showed over time: (from t, counter, state code, reason code) steps; the
    delay each poll took to reach the rules; where the gateway stops, and for how long."""
    t, count, steps = 0.0, 100, []
    state, reason = 1, 0
    for _ in range(draw(st.integers(5, 40))):
        t += draw(st.sampled_from([0.25, 0.5, 1.0, 3.0, 7.5, 25.0]))
        kind = draw(st.sampled_from(["parts", "parts", "parts", "stop", "run"]))
        if kind == "parts" and state == 1:
            count = (count + draw(st.integers(1, 2))) % (1 << 16)
        elif kind == "stop":
            state, reason = draw(st.sampled_from([(2, 301), (2, 302), (5, 201)]))
        else:
            state, reason = 1, 0
        steps.append((t, count, state, reason))
    polls = int(t) + 30
    delays = [draw(st.floats(0, 1.9)) for _ in range(polls)]
    stop_at = draw(st.integers(0, polls))
    away = draw(st.sampled_from([0, 5, 90]))
    return steps, delays, stop_at, away


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(day=plc_days(), tag_order=st.permutations(["good", "state", "reason"]))
def test_live_with_late_samples_and_a_gateway_stop_equals_replay_of_its_log(
    day: tuple[list[tuple[float, int, int, int]], list[float], int, int],
    tag_order: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    live, replayed = live_and_replay(*day, tag_order, tmp_path_factory.mktemp("samples"))

    def events(drafts: list) -> list[tuple]:
        return [(d.type, d.ts, d.order, d.data.model_dump_json()) for d in drafts]

    assert events(replayed) == events(live)


def live_and_replay(
    steps: list[tuple[float, int, int, int]],
    delays: list[float],
    stop_at: int,
    away: int,
    tag_order: list[str],
    log_dir: Path,
) -> tuple[list, list]:
    """The drafts of a live run (late polls, ticks, a gateway stop) and of its log's replay."""
    sample_log = SampleLog(log_dir)

    def shown(t: float) -> tuple[int, int, int]:
        value = (100, 1, 0)
        for since, count, state, reason in steps:
            if since <= t:
                value = (count, state, reason)
        return value

    # The live gateway: a poll every second, each arriving late (less than late_sample_s),
    # in arrival order; ticks on the gateway's clock, every whole second.
    engine = live_engine()
    sample_log.add([GatewayMark("start", at(0))])
    live: list = []
    arrivals: list[tuple[float, int, object]] = []
    last_arrival = 0.0
    skip_until = -1.0
    for n, delay in enumerate(delays):
        ts = n + 0.137
        if n == stop_at:
            arrivals.append((ts, 0, ("stop", ts)))
            skip_until = ts + away
            arrivals.append((skip_until, 0, ("start", skip_until)))
        if ts < skip_until:
            continue
        count, state, reason = shown(ts)
        values = {"good": count, "state": state, "reason": reason}
        batch = [Sample("m1", tag, values[tag], at(ts)) for tag in tag_order]
        last_arrival = max(last_arrival, ts + delay)
        arrivals.append((last_arrival, 1, batch))
    end = len(delays) + away + 5.0
    for second in range(int(end) + 1):
        arrivals.append((float(second), 2, Tick(at(second))))
    arrivals.sort(key=lambda a: (a[0], a[1]))
    stopped = False
    for _, kind, item in arrivals:
        if kind == 0:
            mark, ts = item  # type: ignore[misc]
            if mark == "stop":
                sample_log.add([GatewayMark("stop", at(ts))])
                live += engine.stop(at(ts))
                saved = json.loads(json.dumps(engine.snapshot()))
                stopped = True
            else:
                engine = live_engine()
                engine.restore(saved)
                sample_log.add([GatewayMark("start", at(ts))])
                stopped = False
        elif kind == 2:
            if not stopped:
                live += engine.feed(item)  # type: ignore[arg-type]
        elif not stopped:
            sample_log.add(item)  # type: ignore[arg-type]
            for reading in engine.in_instant_order(item):  # type: ignore[arg-type]
                live += engine.feed(reading)
    sample_log.add([GatewayMark("stop", at(end))])
    live += engine.stop(at(end))
    sample_log.flush()

    logged = [item for path in sorted(log_dir.glob("*.jsonl")) for item in read_log(path)]
    return live, replay(logged, live_engine(), flush=False).drafts
