"""OwnState, StateTag and CountWatch: what the readings say the machine does, and when a
running machine that makes no parts is inferred down."""

from __future__ import annotations

import math

import pytest

from rules.calendar import Segment, ShiftCursor
from rules.counters import ATTENTION
from rules.debounce import StateDebouncer
from rules.downtime_tracker import DowntimeTracker
from rules.drafts import Drafts, StateTriple
from rules.inferred import CountWatch
from rules.interval import CountInterval
from rules.orders import OrderBook
from rules.own_state import OwnState
from rules.parts import CounterRoles
from rules.published import PublishedState
from rules.states import StateTable, StateTag
from rules.work_order import OrderTracker

INF = math.inf


def own(state_tag: bool = True, counters: bool = True) -> OwnState:
    drafts = Drafts("a", "l", "m", [])
    roles = CounterRoles({"good_count"})
    interval = CountInterval(60.0, roles, drafts, counters)
    debounce = StateDebouncer(0.0, interval)
    orders = OrderTracker("m", OrderBook(["m"]), drafts, roles, True)
    shift = ShiftCursor(None)
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
    published = PublishedState(
        shift, debounce, orders, interval, downtime, drafts, lambda: (None, None, None)
    )
    table = StateTable.build("packml-packtags", {}) if state_tag else None
    return OwnState(
        StateTag(table, None),
        CountWatch(None, 3.0, 60.0),
        debounce,
        has_state_tag=state_tag,
        has_counters=counters,
        orders=orders,
        shift=shift,
        published=published,
    )


# StateTag: PackTags codes → buckets; reasons for unknown
@pytest.mark.parametrize(
    ("value", "bucket", "reason"),
    [
        (6, "running", None),
        (11, "down", None),
        (5, "starved", None),
        ("Execute", "running", None),
        (0, "unknown", "state code 0 means unknown"),
        (99, "unknown", "state code 99 not in the state table"),
    ],
)
def test_state_tag_reads_through_the_table(value: object, bucket: str, reason: str | None) -> None:
    tag = StateTag(StateTable.build("packml-packtags", {}), None)
    tag.bucket = "down" if bucket != "down" else "running"
    assert tag.read(value, None) is True
    assert (tag.bucket, tag.reason) == (bucket, reason)
    assert tag.read(value, None) is False  # the same bucket again is no change


def test_state_tag_same_and_lost() -> None:
    tag = StateTag(StateTable.build("machinery", {}), "mode")
    tag.raw = 1
    assert tag.same(1) and not tag.same(True) and not tag.same(1.0)
    tag.read(3, 2)  # Executing in Setup
    assert (tag.bucket, tag.code) == ("changeover", "3:2")
    tag.lost("link down")
    assert (tag.raw, tag.bucket, tag.code, tag.reason) == (ATTENTION, "unknown", None, "link down")


# CountWatch: down_after is the machine's setting, else cycles of the ideal cycle time, else default
@pytest.mark.parametrize(
    ("fixed", "ict", "want"), [(30.0, 2.0, 30.0), (None, 2.0, 6.0), (None, None, 60.0)]
)
def test_down_after(fixed: float | None, ict: float | None, want: float) -> None:
    watch = CountWatch(fixed, 3.0, 60.0)
    watch.cycle_time(ict)
    assert watch.down_after == want and watch.reason == f"no count for {want:g} s"


def test_count_watch_arms_from_the_last_part_or_when_watching_began() -> None:
    watch = CountWatch(10.0, 3.0, 60.0)
    watch.cycle_time(None)
    watch.arm(True, 100.0)
    assert (watch.since, watch.due) == (100.0, 110.0)
    watch.arm(True, 104.0)  # still watching: since stays
    assert watch.due == 110.0
    assert watch.part(105.0) is False
    watch.arm(True, 105.0)
    assert watch.due == 115.0
    watch.stopped = True
    assert watch.part(120.0) is True and not watch.stopped
    watch.arm(False, 121.0)
    assert watch.due == INF
    watch.forget()
    assert (watch.first, watch.last, watch.stopped) == (None, -INF, False)


# OwnState.says(): (state tag?, tag bucket, first count, last part, inferred stop) → state
SAYS: list[tuple[bool, str, float | None, float, bool, StateTriple]] = [
    (True, "running", None, -INF, False, ("running", 6, None)),
    (True, "running", 1.0, 5.0, True, ("down", 6, "no count for 60 s")),
    (True, "down", 1.0, 5.0, True, ("down", 11, None)),
    (False, "unknown", None, -INF, False, ("unknown", None, "no data yet")),
    (False, "unknown", 1.0, -INF, False, ("unknown", None, "waiting for counts")),
    (False, "unknown", 1.0, 2.0, False, ("running", None, None)),
    (False, "unknown", 1.0, 2.0, True, ("down", None, "no count for 60 s")),
]


@pytest.mark.parametrize(("has_tag", "bucket", "first", "last", "stopped", "want"), SAYS)
def test_what_the_readings_say(
    has_tag: bool,
    bucket: str,
    first: float | None,
    last: float,
    stopped: bool,
    want: StateTriple,
) -> None:
    o = own(state_tag=has_tag)
    if has_tag:
        o.tag.read(6 if bucket == "running" else 11, None)
    o.watch.first, o.watch.last, o.watch.stopped = first, last, stopped
    o.debounce.bucket = "running"  # confirmed otherwise, so "no data yet" is not inherited
    assert o.says() == want


@pytest.mark.parametrize(
    ("link_up", "changeover", "segment", "tag_value", "armed"),
    [
        (True, False, "on", 6, True),
        (False, False, "on", 6, False),  # out of sight: no data is no stop
        (True, True, "on", 6, False),  # a changeover is not a stop of its own
        (True, False, "break", 6, False),
        (True, False, "on", 11, False),  # the tag says down already
    ],
)
def test_a_stop_is_inferred_only_while_running_in_sight_and_in_a_shift(
    link_up: bool, changeover: bool, segment: str, tag_value: int, armed: bool
) -> None:
    o = own()
    o.tag.read(tag_value, None)
    o.watch.first = 0.0
    o.orders.changeover = changeover
    o.shift.segment = Segment(-INF, INF, segment, None)  # type: ignore[arg-type]
    assert o.can_infer(link_up) is armed
    o.rearm(10.0, link_up)
    assert (o.watch.due < INF) is armed


def test_no_parts_makes_a_candidate_down_since_the_last_part() -> None:
    o = own()
    o.tag.read(6, None)
    o.debounce.bucket = "running"
    o.first_count(0.0, True, 0.0)
    o.part(10.0, True, 10.0)
    assert o.watch.due == 70.0
    o.no_parts(True, 70.0)
    assert o.watch.stopped and o.debounce.candidate is not None
    assert (o.debounce.candidate.bucket, o.debounce.candidate.since) == ("down", 10.0)
    o.part(75.0, True, 75.0)  # a part: running again, the candidate is dropped
    assert not o.watch.stopped and o.debounce.candidate is None


def test_forget_and_unreadable() -> None:
    o = own()
    o.tag.read(6, None)
    o.debounce.bucket = "running"
    o.state_unreadable("BadNodeIdUnknown", 5.0, True, 5.0)
    assert o.tag.reason == "state tag unreadable: BadNodeIdUnknown"
    assert o.debounce.candidate is not None and o.debounce.candidate.bucket == "unknown"
    o.forget("link down")
    assert o.debounce.state == ("unknown", None, "link down") and o.watch.first is None
