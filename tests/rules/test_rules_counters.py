"""Counter.read: what one good reading of a counter means — parts, quality, or held."""

from __future__ import annotations

import pytest

from rules.counters import GAP, OK, RESET, WRAP, Counter

# (modulus, resettable, old at t=0, new at t=10, max rate/s, stale before) →
#   (parts counted, quality, held (old, new, claimed) or None)
READS = [
    (1 << 16, True, 100, 105, 2.0, False, (5, OK, None)),
    (1 << 16, True, 65534, 3, 2.0, False, (5, WRAP, None)),
    (1 << 16, True, 100, 4, 2.0, False, (4, RESET, None)),
    (1 << 16, True, 100, 5000, 2.0, False, (0, OK, (100, 5000, 4900))),  # a spike
    (1 << 32, False, 5000, 1200, 2.0, False, (0, OK, (5000, 1200, 1200))),  # a preset
    (1 << 16, True, 100, 102, 2.0, True, (2, GAP, None)),  # a read failed in between
    (None, True, 100, 2, None, False, (2, RESET, None)),
]


@pytest.mark.parametrize(("modulus", "resettable", "old", "new", "rate", "stale", "want"), READS)
def test_read(
    modulus: int | None,
    resettable: bool,
    old: int,
    new: int,
    rate: float | None,
    stale: bool,
    want: tuple[int, int, tuple[int, int, int] | None],
) -> None:
    c = Counter("good", "good_count", modulus, resettable)
    c.start(old, 0.0)
    c.stale = stale
    parts, quality, held = c.read(new, 10.0, rate)
    assert (parts, quality) == want[:2]
    assert (None if held is None else held[:3]) == want[2]
    if held is not None:
        assert held[4] == 0.0  # since when the old value was seen
    assert (c.raw, c.ts, c.stale) == (new, 10.0, False)  # the new baseline, held or not


def test_unreadable_flags_the_next_delta_once_there_is_a_baseline() -> None:
    c = Counter("good", "good_count", 1 << 16, True)
    c.unreadable()
    assert not c.stale  # nothing to flag before the first value
    c.start(10, 0.0)
    c.settle()
    assert c.same == 10
    c.unreadable()
    assert c.stale and c.same != 10  # an unchanged value must not take the fast path
