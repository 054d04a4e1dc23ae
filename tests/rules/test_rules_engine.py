"""The engine's API: order commands and their replies, schedules, saved state, odd inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connectors.sample import Link, Sample
from gateway.events import CountData, DowntimeData, Draft, OrderData, StateData
from rules.config import ReasonConfig, RulesSection, StateTableConfig
from rules.counters import HELD, OK, RESET, WRAP, Counter
from rules.downtime import downtime_id
from rules.engine import Engine
from rules.inputs import OrderCommand, PlannedOrder, Tick
from rules.orders import PlanRejected
from rules.spec import MachineSpec, PlantRules, TagSpec

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
# Ticks move machine time to the tick itself here (late_sample_s = 0), except where a test
# sets otherwise.
RULES = RulesSection(count_interval_s=10, min_state_s=0, late_sample_s=0)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def machine(mid: str = "m1", **tags: TagSpec) -> MachineSpec:
    return MachineSpec(
        mid,
        "a",
        "l",
        tags or {"good": TagSpec("good_count", 1 << 32)},
        ideal_cycle_time_s=1.0,
        down_after_s=30,
    )


def make(*specs: MachineSpec, **rules: object) -> Engine:
    return Engine(list(specs) or [machine()], PlantRules(rules=RULES.model_copy(update=rules)))


def cmd(action: str, order: str | None = None, s: float = 1, mid: str = "m1", **kw: object):
    return OrderCommand(mid, action, at(s), "cli", order_id=order, **kw)  # type: ignore[arg-type]


def of(drafts: list[Draft], kind: str) -> list[Draft]:
    return [d for d in drafts if d.type == kind]


def test_commands_are_idempotent_and_refuse_what_matches_nothing() -> None:
    eng = make(machine("m1"), machine("m2"))
    ok, drafts = eng.command(cmd("start", "WO-1"))
    assert (ok.ok, ok.status, ok.order_id) == (True, "running", "WO-1")
    assert [d.type for d in of(drafts, "order.started")] == ["order.started"]

    again, drafts = eng.command(cmd("start", "WO-1", s=2))
    assert again.ok and again.status == "running" and not of(drafts, "order.started")

    refusals = {
        "other order": cmd("start", "WO-2", s=3),
        "elsewhere": cmd("start", "WO-1", s=3, mid="m2"),
        "no id": cmd("start", None, s=3, mid="m2"),
        "bad quantity": cmd("start", "WO-3", s=3, mid="m2", quantity=-1),
        "bad ict": cmd("start", "WO-3", s=3, mid="m2", ideal_cycle_time_s=0.0),
        "mismatch": cmd("stop", "WO-9", s=3),
        "nothing running": cmd("stop", None, s=3, mid="m2"),
        "never ran": cmd("stop", "WO-9", s=3, mid="m2"),
        "unknown machine": cmd("start", "WO-3", s=3, mid="m9"),
    }
    errors = {}
    for name, command in refusals.items():
        result, drafts = eng.command(command)
        assert not result.ok and result.error, name
        assert not of(drafts, "order.started") and not of(drafts, "order.ended"), name
        errors[name] = result.error
    assert errors["other order"] == "order WO-1 is running on m1; stop it first"
    assert errors["elsewhere"] == "order WO-1 is running on m1"
    assert errors["mismatch"] == "order WO-9 is not running on m1 (running: WO-1)"
    assert errors["nothing running"] == "no order is running on m2"
    assert errors["unknown machine"] == "unknown machine 'm9'"

    stop, drafts = eng.command(cmd("stop", "WO-1", s=4))
    assert stop.ok and stop.status == "completed"
    [ended] = of(drafts, "order.ended")
    assert isinstance(ended.data, OrderData) and ended.data.status == "completed"
    again, drafts = eng.command(cmd("stop", "WO-1", s=5))
    assert again.ok and again.status == "completed" and not of(drafts, "order.ended")


def test_schedule_fills_master_data_and_is_all_or_nothing() -> None:
    eng = make(machine("m1"), machine("m2"))
    with pytest.raises(PlanRejected) as info:
        eng.plan(
            [
                PlannedOrder("WO-1", product="P", machine="m1"),
                PlannedOrder("WO-2", machine="m7"),
                PlannedOrder("WO-1"),
            ]
        )
    assert info.value.problems == [
        "order 2 (WO-2): unknown machine 'm7'",
        "order 3 (WO-1): order WO-1 listed twice",
    ]
    assert eng.orders() == []

    assert eng.plan([PlannedOrder("WO-1", "P-1", 500, 0.8, "m1"), PlannedOrder("WO-2")]) == 2
    assert [(o["order_id"], o["status"], o["machine"]) for o in eng.orders()] == [
        ("WO-1", "planned", "m1"),
        ("WO-2", "planned", None),
    ]
    refused, _ = eng.command(cmd("start", "WO-1", mid="m2"))
    assert refused.error == "order WO-1 is planned for m1"
    result, drafts = eng.command(cmd("start", "WO-1", product="P-override"))
    assert result.ok
    [started] = of(drafts, "order.started")
    assert isinstance(started.data, OrderData)
    assert (started.data.product, started.data.quantity, started.data.ideal_cycle_time_s) == (
        "P-override",
        500,
        0.8,
    )
    listed = eng.orders()
    assert [(o["order_id"], o["status"]) for o in listed] == [
        ("WO-1", "running"),
        ("WO-2", "planned"),
    ]
    assert listed[0]["started"] == "2026-03-02T08:00:01.000+00:00"


def test_snapshot_is_json_and_restores_orders_and_baselines() -> None:
    eng = make()
    eng.plan([PlannedOrder("WO-2", product="P")])
    eng.feed(Sample("m1", "good", 100, at(0)))
    eng.command(cmd("start", "WO-1", s=1))
    eng.feed(Sample("m1", "good", 107, at(5)))
    saved = json.loads(json.dumps(eng.snapshot()))

    fresh = make()
    fresh.restore(saved)
    assert [(o["order_id"], o["status"]) for o in fresh.orders()] == [
        ("WO-1", "running"),
        ("WO-2", "planned"),
    ]
    drafts = fresh.feed(Sample("m1", "good", 110, at(20)))
    drafts += fresh.feed(Tick(at(40)))
    records = [(d.order, d.data) for d in drafts if isinstance(d.data, CountData)]
    # the 7 parts counted before the restart, then the 3 made while it was away: each once
    assert [(o, c.total, c.quality) for o, c in records] == [
        ("WO-1", 7, "ok"),
        ("WO-1", 3, "restart"),
    ]

    with pytest.raises(ValueError, match="version"):
        make().restore({"version": 99})


def test_restore_ignores_machines_no_longer_configured() -> None:
    eng = make(machine("m1"), machine("old"))
    eng.feed(Sample("old", "good", 5, at(0)))
    fresh = make(machine("m1"))
    fresh.restore(json.loads(json.dumps(eng.snapshot())))
    assert list(fresh.machines) == ["m1"]


def test_unknown_inputs_are_counted_not_fatal() -> None:
    eng = make()
    assert eng.feed(Sample("nobody", "good", 1, at(0))) == []
    assert eng.feed(Link("nobody", False, at(0))) == []
    eng.feed(Sample("m1", "no-such-tag", 1, at(0)))
    assert eng.stats["unknown machine"] == 2
    with pytest.raises(TypeError):
        eng.feed("a string")  # type: ignore[arg-type]


def test_a_late_sample_counts_at_the_machine_time() -> None:
    eng = make()
    eng.feed(Sample("m1", "good", 0, at(0)))
    eng.feed(Tick(at(15)))
    drafts = eng.feed(Sample("m1", "good", 4, at(3)))  # arrived after time moved on
    drafts += eng.feed(Tick(at(20)))
    [count] = [d.data for d in drafts if isinstance(d.data, CountData)]
    assert (count.start, count.end, count.total) == (at(10), at(20), 4)


def test_a_sample_late_by_less_than_late_sample_s_is_dated_by_its_own_timestamp() -> None:
    # Live, the 1 s tick can overtake a sample still on its way (a loaded box, a slow
    # response); replay has no such race. Both must date the stop at the sample itself.
    spec = MachineSpec(
        "m1",
        "a",
        "l",
        {"good": TagSpec("good_count", 1 << 32), "state": TagSpec("state")},
        ideal_cycle_time_s=1.0,
        down_after_s=30,
        state_table="plain",
    )
    table = StateTableConfig(codes={"1": "running", "2": "down"})
    plant = PlantRules(
        rules=RULES.model_copy(update={"late_sample_s": 2.0}), state_tables={"plain": table}
    )
    live = Engine([spec], plant)
    live.feed(Sample("m1", "state", 1, at(0)))
    live.feed(Tick(at(10)))
    live.feed(Tick(at(11)))  # the clock is at 11 ...
    drafts = live.feed(Sample("m1", "state", 2, at(9.676)))  # ... the PLC stopped at 9.676
    drafts += live.feed(Tick(at(20)))
    [state] = [d.data for d in drafts if isinstance(d.data, StateData)]
    assert state.since == at(9.676)
    [started] = of(drafts, "downtime.started")
    assert isinstance(started.data, DowntimeData)
    assert started.data.downtime_id == "m1-20260302T080009676Z"


def test_unreadable_and_impossible_values_flag_the_next_delta() -> None:
    eng = make(machine(good=TagSpec("good_count", 1000)))
    drafts = eng.feed(Sample("m1", "good", 10, at(0)))
    drafts += eng.feed(Sample("m1", "good", 12, at(1)))
    drafts += eng.feed(Sample("m1", "good", None, at(2), quality="bad", status="timeout"))
    drafts += eng.feed(Sample("m1", "good", 5000, at(3)))  # beyond the modulus
    drafts += eng.feed(Sample("m1", "good", "x", at(4)))
    drafts += eng.feed(Sample("m1", "good", 15, at(5)))
    drafts += eng.feed(Tick(at(10)))
    [count] = [d.data for d in drafts if isinstance(d.data, CountData)]
    assert (count.total, count.quality) == (5, "gap")


def test_good_beyond_total_is_carried_not_lost() -> None:
    # total and good are read at slightly different moments: good may lead for an interval
    tags = {"total": TagSpec("total_count", 1 << 32), "good": TagSpec("good_count", 1 << 32)}
    eng = make(machine(**tags))
    eng.feed(Sample("m1", "total", 0, at(0)))
    eng.feed(Sample("m1", "good", 0, at(0)))
    drafts = eng.feed(Sample("m1", "total", 10, at(9)))
    drafts += eng.feed(Sample("m1", "good", 12, at(9.9)))  # good's two parts counted first
    drafts += eng.feed(Sample("m1", "total", 20, at(14)))
    drafts += eng.feed(Sample("m1", "good", 19, at(14)))
    drafts += eng.feed(Tick(at(20)))
    counts = [d.data for d in drafts if isinstance(d.data, CountData)]
    assert [(c.good, c.reject, c.total) for c in counts] == [(10, 0, 10), (9, 1, 10)]


def test_a_stop_that_ends_out_of_sight_ends_when_last_seen() -> None:
    eng = make(machine(), micro_stop_s=0)
    drafts = eng.feed(Sample("m1", "good", 0, at(0)))
    for s in range(1, 6):
        drafts += eng.feed(Sample("m1", "good", s, at(s)))
    drafts += eng.feed(Tick(at(40)))  # no count for 30 s: down since 5 s
    drafts += eng.feed(Link("m1", False, at(50), "timeout"))
    drafts += eng.feed(Link("m1", True, at(60)))
    drafts += eng.feed(Sample("m1", "good", 5, at(60)))
    drafts += eng.feed(Sample("m1", "good", 6, at(61)))  # producing again
    drafts += eng.feed(Tick(at(70)))
    ended = [d.data for d in of(drafts, "downtime.ended")]
    assert len(ended) == 1 and isinstance(ended[0], DowntimeData)
    assert (ended[0].start, ended[0].end, ended[0].duration_s) == (at(5), at(50), 45.0)


def test_planned_reason_is_never_a_micro_stop_loss() -> None:
    spec = MachineSpec(
        "m1",
        "a",
        "l",
        {"state": TagSpec("state"), "reason": TagSpec("reason")},
        state_table="machinery",
    )
    plant = PlantRules(
        rules=RULES,
        reasons=[ReasonConfig(code="clean", text="Cleaning", planned=True)],
    )
    eng = Engine([spec], plant)
    drafts = eng.feed(Sample("m1", "state", 3, at(0)))
    drafts += eng.feed(Sample("m1", "reason", "clean", at(10)))
    drafts += eng.feed(Sample("m1", "state", 1, at(10)))
    drafts += eng.feed(Sample("m1", "state", 3, at(20)))
    [ended] = [d.data for d in of(drafts, "downtime.ended")]
    assert isinstance(ended, DowntimeData)
    assert (ended.micro_stop, ended.planned, ended.loss, ended.reason_code) == (
        True,
        True,
        "planned",
        "clean",
    )


def test_counter_classification_table() -> None:
    c = Counter("t", "total_count", 1 << 16, resettable=True)
    cases = [
        # (old, new, seconds, max rate) → (delta or claimed, quality, plausible maximum)
        ((100, 110, 10, 2.0), (10, OK, 23)),
        ((65530, 4, 10, 2.0), (10, WRAP, 23)),
        ((5000, 3, 10, 2.0), (3, RESET, 23)),
        ((5000, 0, 10, 2.0), (0, RESET, 23)),
        ((5000, 65000, 10, 2.0), (60000, HELD, 23)),  # back at a preset: a spike, held
        ((100, 600, 10, 2.0), (500, HELD, 23)),  # faster than the machine: held
        ((5000, 3000, 10, 2.0), (3000, HELD, 23)),  # neither a wrap nor a reset to zero
        ((5000, 3, 10, None), (3, RESET, None)),  # no rate: a resettable counter resets
        ((100, 10**4, 10, None), (9900, OK, None)),  # no rate: no spike can be told
    ]
    for (old, new, dt, rate), want in cases:
        c.start(old, 0.0)
        assert c.classify(new, dt, rate) == want, (old, new)
    fixed = Counter("t", "total_count", 1 << 16, resettable=False)
    fixed.start(5000, 0.0)
    assert fixed.classify(3, 10, 2.0) == (3, HELD, 23)  # never reset, yet went back
    assert fixed.classify(0, 10, 2.0) == (0, RESET, 23)  # to zero: claims nothing
    assert fixed.classify(3, 10, None) == (65536 - 5000 + 3, WRAP, None)
    unbounded = Counter("t", "total_count", None, resettable=False)
    unbounded.start(5000, 0.0)
    assert unbounded.classify(3, 10, None) == (3, HELD, None)


def test_plausibility_is_judged_over_a_minute_so_parts_booked_in_steps_pass() -> None:
    # A case packer adds 12 at once every 8 s; it makes 1.5 parts/s at most (tolerance in).
    c = Counter("t", "total_count", 1 << 32, resettable=False)
    c.start(0, 0.0)
    value = 0
    for step in range(1, 40):
        delta, quality, _ = c.classify(value + 12, step * 8.0, 1.5)
        assert (delta, quality) == (12, OK), step
        value += 12
        c.accept(value, step * 8.0, delta)
    # 1,000 parts in the next 8 s is not a step: held, with what the window still allows.
    assert c.classify(value + 1000, 40 * 8.0, 1.5)[1] == HELD


def test_downtime_ids_are_unique_within_a_millisecond() -> None:
    first, last = downtime_id("m1", at(5).timestamp(), (0, 0))
    second, last = downtime_id("m1", at(5).timestamp(), last)
    third, _ = downtime_id("m1", at(6).timestamp(), last)
    assert (first, second, third) == (
        "m1-20260302T080005000Z",
        "m1-20260302T080005000Z-2",
        "m1-20260302T080006000Z",
    )


def test_a_plc_clock_far_ahead_counts_at_the_gateway_clock() -> None:
    eng = make()
    eng.feed(Tick(at(0)))
    drafts = eng.feed(Sample("m1", "good", 0, at(1)))
    drafts += eng.feed(Sample("m1", "good", 2, at(3600 * 24 * 365)))  # a year ahead
    drafts += eng.feed(Tick(at(10)))
    assert eng.stats["reading ahead of the clock"] == 1
    [count] = [d.data for d in drafts if isinstance(d.data, CountData)]
    assert (count.end, count.total) == (at(10), 2)


def test_parts_counted_across_a_gap_are_spread_over_its_orders() -> None:
    eng = make()
    drafts = eng.feed(Sample("m1", "good", 0, at(0)))
    drafts += eng.feed(Sample("m1", "good", 10, at(5)))
    drafts += eng.feed(Link("m1", False, at(10), "timeout"))
    result, made = eng.command(cmd("start", "WO-1", s=40))
    assert result.ok
    drafts += made
    drafts += eng.feed(Link("m1", True, at(70)))
    drafts += eng.feed(Sample("m1", "good", 101, at(70.5)))
    gap = [(d.order, d.data) for d in drafts if isinstance(d.data, CountData)]
    assert [(o, c.start, c.end, c.total, c.quality) for o, c in gap] == [
        (None, at(0), at(10), 10, "ok"),
        (None, at(10), at(40), 46, "gap"),  # 91 parts over 60 s: 45.5 each, the rest first
        ("WO-1", at(40), at(70), 45, "gap"),
    ]
