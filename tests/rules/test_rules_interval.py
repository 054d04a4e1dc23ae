"""CountInterval: the open count interval on the grid, closed and reported (or not)."""

from __future__ import annotations

import math

import pytest

from gateway.events import CountData, Draft
from rules.counters import WRAP
from rules.drafts import Drafts
from rules.interval import CountInterval
from rules.parts import CounterRoles


def interval(length: float = 60.0, counters: bool = True) -> tuple[CountInterval, list[Draft]]:
    out: list[Draft] = []
    roles = CounterRoles({"good_count", "reject_count"})
    return CountInterval(length, roles, Drafts("a", "l", "m", out), counters), out


@pytest.mark.parametrize(
    ("length", "t", "want"),
    [(60.0, 0.0, 60.0), (60.0, 59.9, 60.0), (60.0, 60.0, 120.0), (10.0, 1234.5, 1240.0)],
)
def test_the_grid_lies_on_the_clock(length: float, t: float, want: float) -> None:
    assert interval(length)[0].grid_after(t) == want


def test_without_counters_there_is_no_grid_and_nothing_is_reported() -> None:
    iv, out = interval(counters=False)
    assert iv.grid_after(5.0) == math.inf
    iv.parts.add("good_count", 3)
    iv.close(10.0, "running", None, None, None)
    assert out == [] and iv.start == 10.0


# (published bucket, good, reject) → reported?
@pytest.mark.parametrize(
    ("bucket", "good", "reject", "reported"),
    [
        ("running", 0, 0, True),  # an empty interval while running is news: nothing made
        ("down", 0, 0, True),
        ("unknown", 0, 0, False),
        ("not_scheduled", 0, 0, False),
        ("unknown", 2, 0, True),  # parts are always reported
        ("not_scheduled", 0, 1, True),
    ],
)
def test_close_reports_unless_quiet_and_empty(
    bucket: str, good: int, reject: int, reported: bool
) -> None:
    iv, out = interval()
    iv.start = 0.0
    iv.parts.add("good_count", good, WRAP)
    iv.parts.add("reject_count", reject)
    iv.close(60.0, bucket, "WO-1", "s-1", 0.5)
    assert iv.start == 60.0 and not iv.parts and iv.parts.quality == 0
    assert bool(out) is reported
    if out:
        data = out[0].data
        assert isinstance(data, CountData)
        assert (data.good, data.reject, data.total) == (good, reject, good + reject)
        assert data.quality == "wrap" and data.ideal_cycle_time_s == 0.5
        assert (out[0].order, out[0].shift) == ("WO-1", "s-1")


def test_close_at_or_before_the_start_is_nothing() -> None:
    iv, out = interval()
    iv.start = 30.0
    iv.parts.add("good_count", 1)
    iv.close(30.0, "running", None, None, None)
    assert out == [] and iv.parts.good == 1


def test_skip_jumps_to_the_last_grid_point_before_the_limit() -> None:
    iv, _ = interval(60.0)
    iv.skip(120.0, 1000.0)
    assert (iv.start, iv.closes) == (960.0, 1020.0)
    iv.skip(120.0, 130.0)  # never back before e
    assert (iv.start, iv.closes) == (120.0, 180.0)
