"""MachineTime: the machine's own time, and what comes due in it, in time order; and the
parts that say when: ShiftCursor, MachineTags."""

from __future__ import annotations

import math
from collections import Counter as Tally
from datetime import UTC, datetime, time

import pytest

from rules.calendar import Calendar, ShiftCursor
from rules.config import RulesSection, ShiftCalendar, ShiftPattern
from rules.debounce import StateDebouncer
from rules.downtime_tracker import DowntimeTracker
from rules.drafts import Drafts
from rules.inferred import CountWatch
from rules.interval import CountInterval
from rules.machine_time import MAX_AHEAD_S, MachineTime
from rules.parts import CounterRoles
from rules.spec import MachineSpec, PlantRules, TagSpec
from rules.tags import MachineTags

INF = math.inf


def clock() -> tuple[MachineTime, list[tuple[str, float]]]:
    drafts = Drafts("a", "l", "m", [])
    interval = CountInterval(60.0, CounterRoles({"good_count"}), drafts, True)
    debounce = StateDebouncer(0.0, interval)
    downtime = DowntimeTracker(
        "m",
        drafts,
        min_state_s=0.0,
        micro_stop_s=0.0,
        micro_loss="performance",
        external_loss="performance",
        resolve=lambda changeover: None,
        moment=lambda: (None, None, 0.0),
    )
    watch = CountWatch(None, 3.0, 60.0)
    time_ = MachineTime(interval, ShiftCursor(None), debounce, watch, downtime, Tally())
    done: list[tuple[str, float]] = []

    def at(name: str, due: str) -> object:
        def handler(e: float, t: float = 0.0) -> None:
            done.append((name, e))
            obj = {"grid": interval, "candidate": debounce, "stop": watch}[due]
            setattr(obj, "closes" if due == "grid" else "due", INF)

        return handler

    time_.on_grid = at("grid", "grid")  # type: ignore[assignment]
    time_.on_confirm = at("candidate", "candidate")  # type: ignore[assignment]
    time_.on_no_parts = at("stop", "stop")  # type: ignore[assignment]
    time_.on_start = lambda t: done.append(("start", t))
    return time_, done


def test_what_is_due_is_processed_in_time_order_ties_grid_first() -> None:
    t, done = clock()
    t.advance(0.0)
    t.interval.closes = 60.0
    t.debounce.due = 30.0
    t.watch.due = 60.0  # a tie with the grid: the interval closes first
    t.advance(100.0)
    assert done == [("start", 0.0), ("candidate", 30.0), ("grid", 60.0), ("stop", 60.0)]
    assert t.now == 100.0 and t.deadline == INF


def test_nothing_due_yet_sets_the_deadline() -> None:
    t, done = clock()
    t.advance(0.0)
    t.interval.closes = 60.0
    t.settle()
    assert t.deadline == 60.0 and done == [("start", 0.0)]


@pytest.mark.parametrize(
    ("now", "clock_", "reading", "want"),
    [
        (100.0, INF, 90.0, 100.0),  # a late reading counts at now
        (100.0, INF, 110.0, 110.0),
        (100.0, 200.0, 200.0 + MAX_AHEAD_S + 1, 200.0),  # far ahead of the clock: at the clock
    ],
)
def test_the_time_of_a_reading(now: float, clock_: float, reading: float, want: float) -> None:
    t, _ = clock()
    t.advance(now)
    t.clock = clock_
    assert t.of(datetime.fromtimestamp(reading, UTC)) == want
    assert t.now == max(now, want)


def test_shift_cursor_and_its_shift() -> None:
    calendar = ShiftCalendar(
        shifts=[ShiftPattern(name="early", days=["mon-fri"], start=time(6), end=time(14))]
    )
    cursor = ShiftCursor(Calendar("default", calendar, "UTC"))
    at = datetime(2026, 3, 2, 7, tzinfo=UTC).timestamp()
    cursor.segment = cursor.at(at)
    assert cursor.shift_id == "default-20260302-early" and cursor.segment.kind == "on"
    assert cursor.segment.end == datetime(2026, 3, 2, 14, tzinfo=UTC).timestamp()
    assert ShiftCursor(None).at(at).kind == "on" and ShiftCursor(None).shift_id is None


@pytest.mark.parametrize(
    ("max_rate", "ict", "want"), [(4.0, 0.5, 4.0), (None, 0.5, 3.0), (None, None, None)]
)
def test_machine_tags(max_rate: float | None, ict: float | None, want: float | None) -> None:
    spec = MachineSpec(
        "m",
        "a",
        "l",
        {"g": TagSpec("good_count", 1 << 16), "s": TagSpec("state"), "r": TagSpec("reason")},
        ideal_cycle_time_s=ict,
        max_rate_per_s=max_rate,
        state_table="packml-packtags",
    )
    tags = MachineTags(spec, PlantRules(rules=RulesSection(rate_tolerance=1.5)))
    assert list(tags.counters) == ["g"] and (tags.state_tag, tags.reason_tag) == ("s", "r")
    assert tags.max_rate == want
    tags.values.update({"r": 0, "s": 11})
    assert tags.resolve(False) is None
    tags.values["r"] = 7
    found = tags.resolve(False)
    assert found is not None and found.code == "7"


def test_a_state_tag_needs_a_state_table() -> None:
    spec = MachineSpec("m", "a", "l", {"s": TagSpec("state")})
    with pytest.raises(ValueError, match="needs a state table"):
        MachineTags(spec, PlantRules())
