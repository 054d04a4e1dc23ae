"""Replay: recorded readings through a fresh engine, ticks rebuilt, a summary for the engineer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors.sample import Sample
from rules.config import RulesSection
from rules.engine import Engine
from rules.inputs import OrderCommand
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
