"""StateDebouncer: a change is a candidate until it has lasted min_state_s; its parts wait."""

from __future__ import annotations

import pytest

from rules.debounce import StateDebouncer
from rules.drafts import Drafts
from rules.interval import CountInterval
from rules.parts import CounterRoles

RUNNING = ("running", 6, None)
DOWN = ("down", 11, None)


def debouncer(min_state_s: float = 5.0) -> StateDebouncer:
    roles = CounterRoles({"good_count"})
    interval = CountInterval(60.0, roles, Drafts("a", "l", "m", []), True)
    return StateDebouncer(min_state_s, interval)


def test_a_change_is_a_candidate_due_min_state_s_after_it_began() -> None:
    d = debouncer()
    d.bucket = "running"
    d.consider(DOWN, since=100.0, published_since=0.0, now=101.0)
    assert d.candidate is not None and d.candidate.since == 100.0 and d.due == 105.0
    assert d.bucket == "running"  # not yet
    d.consider(DOWN, since=103.0, published_since=0.0, now=103.0)
    assert d.candidate.since == 100.0  # the same candidate goes on
    confirmed = d.confirm()
    assert (d.bucket, d.code, d.candidate, d.due) == ("down", 11, None, float("inf"))
    assert confirmed.since == 100.0


# (since, published since, interval start, now) → (candidate since, split, due)
CASES = [
    ((100.0, 0.0, 60.0, 100.0), (100.0, 100.0, 105.0)),
    ((100.0, 102.0, 60.0, 102.0), (102.0, 102.0, 107.0)),  # not before what was published
    ((100.0, 0.0, 120.0, 130.0), (100.0, 120.0, 130.0)),  # parts held from the interval start
]


@pytest.mark.parametrize(("given", "want"), CASES)
def test_candidate_dating(
    given: tuple[float, float, float, float], want: tuple[float, float, float]
) -> None:
    since, published, start, now = given
    d = debouncer()
    d.bucket = "running"
    d.interval.start = start
    d.consider(DOWN, since, published, now)
    assert d.candidate is not None
    assert (d.candidate.since, d.candidate.split, d.due) == want


def test_back_to_the_confirmed_state_drops_the_candidate_and_returns_its_parts() -> None:
    d = debouncer()
    d.bucket = "running"
    d.consider(DOWN, 100.0, 0.0, 100.0)
    d.parts_at(101.0).add("good_count", 3)
    assert d.interval.parts.good == 0
    d.consider(RUNNING, 102.0, 0.0, 102.0)
    assert d.candidate is None and d.interval.parts.good == 3


def test_parts_before_the_split_go_to_the_interval_and_release_moves_the_split() -> None:
    d = debouncer()
    d.bucket = "running"
    d.interval.start = 90.0
    d.consider(DOWN, 100.0, 0.0, 100.0)
    d.parts_at(99.0).add("good_count", 1)  # a late part, before the candidate began
    d.parts_at(100.0).add("good_count", 2)
    assert (d.interval.parts.good, d.candidate.parts.good) == (1, 2)  # type: ignore[union-attr]
    d.release(100.0)  # at the split: nothing moves
    assert d.interval.parts.good == 1
    d.release(103.0)  # the interval closes at 103: the candidate's parts so far go with it
    assert d.interval.parts.good == 3 and d.candidate.split == 103.0  # type: ignore[union-attr]


def test_forget_makes_the_machine_unknown() -> None:
    d = debouncer()
    d.bucket = "running"
    d.consider(DOWN, 100.0, 0.0, 100.0)
    d.parts_at(100.0).add("good_count", 4)
    d.forget("link down")
    assert d.state == ("unknown", None, "link down")
    assert d.candidate is None and d.interval.parts.good == 4
