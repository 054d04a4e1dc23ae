"""OrderTracker: the active work order from PLC tags and commands, and the changeover."""

from __future__ import annotations

import pytest

from gateway.events import Draft
from rules.drafts import Drafts
from rules.orders import ActiveOrder, OrderBook
from rules.parts import CounterRoles
from rules.work_order import OrderTracker


def tracker(
    roles: set[str] | None = None, changeover: bool = True
) -> tuple[OrderTracker, list[Draft]]:
    out: list[Draft] = []
    counting = CounterRoles(roles if roles is not None else {"good_count", "reject_count"})
    return OrderTracker(
        "m", OrderBook(["m"]), Drafts("a", "l", "m", out), counting, changeover
    ), out


# The PLC's order tag over time (plc shown before, running, the value now) → (switch, new order)
PLC = [
    (None, None, "WO-1", True, "WO-1"),
    ("WO-1", "WO-1", "WO-1", False, None),  # the same number: nothing
    ("WO-1", "WO-1", "WO-2", True, "WO-2"),
    ("WO-1", "WO-1", 0, True, None),  # cleared: the order it showed ends
    ("WO-1", "WO-9", "", False, None),  # cleared, but a command's order runs: it stays
    ("WO-1", "WO-7", "WO-7", False, None),  # shows what already runs
    (None, None, 42, True, "42"),  # numeric order numbers are text
]


@pytest.mark.parametrize(("shown", "running", "value", "switch", "new"), PLC)
def test_the_plc_order_tag(
    shown: str | None, running: str | None, value: object, switch: bool, new: str | None
) -> None:
    t, _ = tracker()
    t.plc_order = shown
    t.active = None if running is None else ActiveOrder(running, "http", 0.0)
    got_switch, order = t.from_plc(value, 5.0)
    assert (got_switch, None if order is None else order.order_id) == (switch, new)
    if order is not None:
        assert (order.origin, order.started) == ("plc", 5.0)


def test_switch_ends_the_order_and_begins_a_changeover() -> None:
    t, out = tracker()
    t.switch(10.0, ActiveOrder("WO-1", "http", 10.0, ideal_cycle_time_s=0.5), "s-1")
    assert t.ideal_cycle_time(2.0) == 0.5 and t.book.running == {"WO-1": "m"}
    t.switch(20.0, None, "s-1")
    assert [(d.type, d.order, d.data.status) for d in out] == [  # type: ignore[union-attr]
        ("order.started", "WO-1", "running"),
        ("order.ended", "WO-1", "completed"),
    ]
    assert t.changeover and t.last_completed == "WO-1" and t.ideal_cycle_time(2.0) == 2.0


# (counters, parts counted in the changeover as (role, delta) …) → ended after each
ENDS = [
    ({"good_count", "reject_count"}, [("reject_count", 2), ("good_count", 1)], [False, True]),
    ({"total_count"}, [("total_count", 1)], [True]),
    # total less reject: a reject counted first is no good part
    (
        {"total_count", "reject_count"},
        [("reject_count", 1), ("total_count", 1), ("total_count", 1)],
        [False, False, True],
    ),
    ({"reject_count"}, [("reject_count", 5)], [False]),
]


@pytest.mark.parametrize(("roles", "counted", "ended"), ENDS)
def test_a_changeover_ends_at_the_first_good_part(
    roles: set[str], counted: list[tuple[str, int]], ended: list[bool]
) -> None:
    t, _ = tracker(roles)
    assert [t.ends_changeover(role, delta) for role, delta in counted] == ended


def test_no_changeover_without_a_counter_that_shows_good_parts() -> None:
    assert not tracker({"reject_count"})[0].changeover_on
    assert not tracker(changeover=False)[0].changeover_on
    assert tracker({"total_count"})[0].changeover_on
