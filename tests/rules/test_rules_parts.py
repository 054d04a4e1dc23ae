"""Parts and CounterRoles: good, reject and total from whichever counters a machine has."""

from __future__ import annotations

import pytest

from rules.counters import GAP, OK, RESET, WRAP
from rules.parts import CounterRoles, Parts


def parts(good: int = 0, reject: int = 0, total: int = 0, quality: int = OK) -> Parts:
    p = Parts()
    p.good, p.reject, p.total, p.quality = good, reject, total, quality
    return p


@pytest.mark.parametrize(
    ("role", "delta", "quality", "want"),
    [
        ("good_count", 3, OK, (3, 0, 0, WRAP)),  # the worse flag already there stays
        ("reject_count", 2, GAP, (0, 2, 0, GAP)),
        ("total_count", 7, RESET, (0, 0, 7, RESET)),
    ],
)
def test_parts_add_by_role_with_the_worst_flag(
    role: str, delta: int, quality: int, want: tuple[int, int, int, int]
) -> None:
    p = parts(quality=WRAP)
    p.add(role, delta, quality)
    assert (p.good, p.reject, p.total, p.quality) == want


def test_parts_take_flag_clear_and_truth() -> None:
    a, b = parts(1, 2, 3, WRAP), parts(10, 0, 10, RESET)
    a.take(b)
    assert (a.good, a.reject, a.total, a.quality) == (11, 2, 13, RESET)
    assert (b.good, b.quality) == (10, RESET)  # the other keeps its own
    a.clear()
    assert not a and a.quality == OK
    a.flag(GAP)
    assert not a and a.quality == GAP  # a flag alone adds no parts
    assert parts(reject=1)


# (counters present, parts counted, carried good/reject before) → (good, reject, total), carry
SPLITS = [
    ({"good_count", "reject_count"}, (5, 2, 0), (0, 0), (5, 2, 7), (0, 0)),
    ({"total_count", "good_count"}, (5, 0, 7), (0, 0), (5, 2, 7), (0, 0)),
    # good read a moment after total: the excess waits for the next stretch
    ({"total_count", "good_count"}, (9, 0, 7), (0, 0), (7, 0, 7), (2, 0)),
    ({"total_count", "good_count"}, (3, 0, 6), (2, 0), (5, 1, 6), (0, 0)),
    ({"total_count", "reject_count"}, (0, 1, 6), (0, 0), (5, 1, 6), (0, 0)),
    ({"total_count", "reject_count"}, (0, 8, 6), (0, 0), (0, 6, 6), (0, 2)),
    ({"total_count"}, (0, 0, 4), (0, 0), (4, 0, 4), (0, 0)),
    ({"good_count"}, (4, 0, 0), (0, 0), (4, 0, 4), (0, 0)),
    ({"reject_count"}, (0, 4, 0), (0, 0), (0, 4, 4), (0, 0)),
]


@pytest.mark.parametrize(("roles", "counted", "carried", "want", "carry"), SPLITS)
def test_counter_roles_split(
    roles: set[str],
    counted: tuple[int, int, int],
    carried: tuple[int, int],
    want: tuple[int, int, int],
    carry: tuple[int, int],
) -> None:
    split = CounterRoles(roles)
    split.carry_good, split.carry_reject = carried
    assert split.split(parts(*counted)) == want
    assert (split.carry_good, split.carry_reject) == carry
