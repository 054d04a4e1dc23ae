"""CountGap: parts made out of sight, counted on return, spread over orders and shifts."""

from __future__ import annotations

import pytest

from gateway.events import CountData, Draft
from rules.counters import GAP, RESTART, Counter
from rules.drafts import Drafts
from rules.gap import CountGap, spread
from rules.parts import CounterRoles


def gap_of(*tags: str) -> tuple[CountGap, dict[str, Counter], list[Draft]]:
    counters = {tag: Counter(tag, f"{tag}_count", 1 << 32, True) for tag in tags}
    for c in counters.values():
        c.start(100, 0.0)
    out: list[Draft] = []
    roles = CounterRoles({f"{tag}_count" for tag in tags})
    return CountGap(counters, roles, Drafts("a", "l", "m", out)), counters, out


@pytest.mark.parametrize(
    ("n", "weights", "want"),
    [
        (10, [1.0, 1.0], [5, 5]),
        (7, [1.0, 1.0], [4, 3]),  # the remainder to the first of equals
        (10, [3.0, 1.0, 0.0], [8, 2, 0]),
        (1, [1.0, 2.0], [0, 1]),
        (0, [1.0, 1.0], [0, 0]),
        (5, [0.0, 0.0], [0, 0]),
    ],
)
def test_spread_in_whole_parts_that_sum_up(n: int, weights: list[float], want: list[int]) -> None:
    assert spread(n, weights) == want
    if sum(weights):
        assert sum(spread(n, weights)) == n


def test_a_gap_is_counted_once_every_counter_is_back() -> None:
    gap, counters, out = gap_of("good", "reject")
    gap.begin(10.0, GAP, (10.0, "WO-1", "s-1", 0.5))
    assert all(c.gap for c in counters.values())
    gap.back(40.0)
    assert gap.absorb(counters["good"], 30, 0, now=40.0) is None
    assert out == []  # the reject counter has not reported yet
    assert gap.absorb(counters["reject"], 2, 0, now=41.0) is None
    (draft,) = out
    assert isinstance(draft.data, CountData)
    assert (draft.data.good, draft.data.reject, draft.data.quality) == (30, 2, "gap")
    assert (draft.data.start.timestamp(), draft.data.end.timestamp()) == (10.0, 40.0)
    assert (draft.order, draft.shift, draft.data.ideal_cycle_time_s) == ("WO-1", "s-1", 0.5)
    assert gap.start is None


def test_parts_are_spread_over_the_stretches_by_time() -> None:
    gap, counters, out = gap_of("good")
    gap.begin(0.0, RESTART, (0.0, "WO-1", "early", None))
    gap.boundary((30.0, "WO-2", "early", None))  # an order change while out of sight
    gap.back(40.0)
    gap.absorb(counters["good"], 40, 0, now=40.0)
    assert [(d.order, d.data.good, d.data.quality) for d in out] == [  # type: ignore[union-attr]
        ("WO-1", 30, "restart"),
        ("WO-2", 10, "restart"),
    ]


def test_a_counter_that_never_came_back_flags_its_next_delta() -> None:
    gap, counters, out = gap_of("good", "reject")
    gap.begin(0.0, GAP, (0.0, None, None, None))
    gap.back(5.0)
    gap.absorb(counters["good"], 3, 0, now=5.0)
    gap.report()  # a boundary, say: what came back is counted now
    assert [d.data.good for d in out] == [3]  # type: ignore[union-attr]
    reject = counters["reject"]
    assert not reject.gap and reject.stale
    # the gap is gone: the reject counter's parts land where they are, flagged
    assert gap.absorb(reject, 1, 0, now=9.0) == GAP


def test_a_gap_going_on_keeps_its_start() -> None:
    gap, _, _ = gap_of("good")
    gap.begin(0.0, GAP, (0.0, None, None, None))
    gap.back(5.0)
    gap.begin(7.0, RESTART, (7.0, None, None, None))
    assert (gap.start, gap.end, gap.kind, len(gap.stretches)) == (0.0, None, GAP, 1)
