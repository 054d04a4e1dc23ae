"""PublishedState: the calendar overrides the machine, a changeover its stops."""

from __future__ import annotations

import math

import pytest

from gateway.events import Draft, StateData
from rules.calendar import Segment, ShiftCursor
from rules.debounce import StateDebouncer
from rules.downtime_tracker import DowntimeTracker
from rules.drafts import Drafts, StateTriple
from rules.interval import CountInterval
from rules.orders import OrderBook
from rules.parts import CounterRoles
from rules.published import PublishedState
from rules.work_order import OrderTracker

INF = math.inf


def published() -> tuple[PublishedState, list[Draft]]:
    out: list[Draft] = []
    drafts = Drafts("a", "l", "m", out)
    roles = CounterRoles({"good_count"})
    interval = CountInterval(60.0, roles, drafts, True)
    debounce = StateDebouncer(0.0, interval)
    orders = OrderTracker("m", OrderBook(["m"]), drafts, roles, True)
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
    state = PublishedState(
        ShiftCursor(None), debounce, orders, interval, downtime, drafts, lambda: (None, "s", 1.0)
    )
    return state, out


# (segment, machine's own state, changeover) → published
PRECEDENCE: list[tuple[str, StateTriple, bool, StateTriple]] = [
    ("on", ("running", 6, None), False, ("running", 6, None)),
    ("on", ("down", 11, None), True, ("changeover", None, "changeover")),
    ("on", ("unknown", None, "link down"), True, ("unknown", None, "link down")),
    ("break", ("down", 11, None), True, ("planned_stop", None, "break")),
    ("off", ("running", 6, None), False, ("not_scheduled", None, "outside shifts")),
    ("off", ("unknown", None, "link down"), False, ("not_scheduled", None, "outside shifts")),
]


@pytest.mark.parametrize(("segment", "own", "changeover", "want"), PRECEDENCE)
def test_precedence(segment: str, own: StateTriple, changeover: bool, want: StateTriple) -> None:
    state, _ = published()
    state.shift.segment = Segment(-INF, INF, segment, None)  # type: ignore[arg-type]
    state.debounce.bucket, state.debounce.code, state.debounce.reason = own
    state.orders.changeover = changeover
    assert state.effective() == want


def test_a_change_closes_the_interval_and_is_published_once() -> None:
    state, out = published()
    state.interval.start = 0.0
    state.interval.parts.add("good_count", 3)
    state.debounce.bucket, state.debounce.code = "running", 6
    state.apply(30.0)
    state.apply(31.0)  # the same bucket: nothing new
    assert [d.type for d in out] == ["count", "state"]
    data = out[1].data
    assert isinstance(data, StateData) and data.bucket == "running"
    assert (state.bucket, state.since, out[1].shift) == ("running", 30.0, "s")


def test_a_confirmed_candidate_is_dated_from_its_start() -> None:
    state, out = published()
    state.bucket, state.since = "running", 0.0
    state.debounce.bucket = "running"
    state.interval.start = 0.0
    state.debounce.consider(("down", 11, None), 100.0, 0.0, 100.0)
    state.debounce.parts_at(101.0).add("good_count", 2)  # held by the candidate
    state.confirmed(state.debounce.confirm())
    assert [(d.type, d.ts.timestamp()) for d in out] == [
        ("count", 100.0),  # closed where the candidate began
        ("state", 100.0),
        ("downtime.started", 100.0),
    ]
    assert state.interval.parts.good == 2  # its parts are in the new interval
