"""Coalescing: the fewest requests, within the caps, every tag read whole exactly once."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.modbus.address import TagSpec
from connectors.modbus.plan import Request, merge, plan, split


def reg(name: str, start: int, size: int = 1, table: str = "hr") -> TagSpec:
    return TagSpec(name, table, start, size, "uint16", "ABCD")  # type: ignore[arg-type]


def bit(name: str, start: int, table: str = "coil") -> TagSpec:
    return TagSpec(name, table, start, 1, "bool", "ABCD")  # type: ignore[arg-type]


def shape(requests: list[Request]) -> list[tuple[str, int, int]]:
    return [(r.table, r.start, r.count) for r in requests]


def test_sorted_and_merged_across_small_gaps() -> None:
    tags = [reg("c", 20, 2), reg("a", 0), reg("b", 5, 2), reg("far", 100)]
    requests = plan(tags, max_gap=13)
    assert shape(requests) == [("hr", 0, 22), ("hr", 100, 1)]
    assert [t.name for t in requests[0].tags] == ["a", "b", "c"]
    assert shape(plan(tags, max_gap=12)) == [("hr", 0, 7), ("hr", 20, 2), ("hr", 100, 1)]
    assert shape(plan(tags, max_gap=0)) == [
        ("hr", 0, 1),
        ("hr", 5, 2),
        ("hr", 20, 2),
        ("hr", 100, 1),
    ]


def test_tables_never_mix_and_come_in_a_fixed_order() -> None:
    tags = [bit("d", 0, "di"), reg("i", 0, table="ir"), bit("c", 0), reg("h", 0)]
    assert shape(plan(tags)) == [("hr", 0, 1), ("ir", 0, 1), ("coil", 0, 1), ("di", 0, 1)]


def test_register_cap_is_never_exceeded_and_tags_are_never_cut() -> None:
    # 300 contiguous registers of 2-register values: 125 would cut a value in two.
    tags = [reg(f"t{i}", 2 * i, 2) for i in range(150)]
    requests = plan(tags)
    assert shape(requests) == [("hr", 0, 124), ("hr", 124, 124), ("hr", 248, 52)]
    assert shape(plan(tags, max_registers=50)) == [("hr", i * 50, 50) for i in range(6)]


def test_bits_merge_up_to_2000_with_gaps_in_register_bytes() -> None:
    coils = [bit(f"c{i}", i) for i in range(2500)]
    assert shape(plan(coils)) == [("coil", 0, 2000), ("coil", 2000, 500)]
    assert shape(plan(coils, max_bits=1000)) == [("coil", i * 1000, 1000) for i in range(2)] + [
        ("coil", 2000, 500)
    ]
    # max_gap counts registers; for bits that is 16 bits a register
    sparse = [bit("a", 0, "di"), bit("b", 33, "di"), bit("c", 100, "di")]
    assert shape(plan(sparse, max_gap=2)) == [("di", 0, 34), ("di", 100, 1)]
    assert shape(plan(sparse, max_gap=5)) == [("di", 0, 101)]


def test_overlapping_tags_share_a_request_even_one_per_tag() -> None:
    word = reg("word", 10)
    flags = [TagSpec(f"b{i}", "hr", 10, 1, "bool", "ABCD", bit=i) for i in range(3)]
    counter = reg("counter", 11, 2)
    other = reg("other", 14)
    assert shape(plan([word, *flags, counter, other])) == [("hr", 10, 5)]
    per_tag = plan([word, *flags, counter, other], one_request_per_tag=True)
    # bits of the register ride with it; the counter overlaps nothing and gets its own
    assert shape(per_tag) == [("hr", 10, 1), ("hr", 11, 2), ("hr", 14, 1)]
    assert {t.name for t in per_tag[0].tags} == {"word", "b0", "b1", "b2"}


def test_split_drops_holes_first_then_goes_per_tag() -> None:
    [merged] = plan([reg("a", 0), reg("b", 1), reg("c", 5)], max_gap=8)
    assert merged.has_gaps
    parts = split(merged)
    assert shape(parts) == [("hr", 0, 2), ("hr", 5, 1)]
    assert shape(split(parts[0])) == [("hr", 0, 1), ("hr", 1, 1)]
    assert split(parts[1]) == [parts[1]]  # one tag: nothing left to split


@cache
def _optimum(spans: tuple[tuple[int, int], ...], gap: int, cap: int) -> int:
    """Fewest requests over consecutive runs of the address-sorted tags (exhaustive)."""
    if not spans:
        return 0
    best = len(spans)
    start, end = spans[0]
    for i in range(1, len(spans) + 1):
        if i > 1:
            s, e = spans[i - 1]
            if s - end > gap or max(end, e) - start > cap:
                break
            end = max(end, e)
        best = min(best, 1 + _optimum(spans[i:], gap, cap))
    return best


tag_lists = st.lists(
    st.tuples(st.integers(0, 400), st.sampled_from([1, 1, 2, 2, 4, 8])), min_size=1, max_size=40
)


@settings(max_examples=300, deadline=None)
@given(tag_lists, st.integers(0, 20), st.integers(8, 125))
def test_plan_is_minimal_and_complete(spans: list[tuple[int, int]], gap: int, cap: int) -> None:
    tags = [reg(f"t{i}", start, size) for i, (start, size) in enumerate(spans)]
    requests = plan(tags, max_gap=gap, max_registers=cap)
    served = [t.name for r in requests for t in r.tags]
    assert sorted(served) == sorted(t.name for t in tags)  # each tag exactly once
    for r in requests:
        assert r.count <= cap
        for t in r.tags:
            assert r.start <= t.start and t.end <= r.start + r.count  # read whole
    ordered = tuple(sorted((t.start, t.end) for t in tags))
    assert len(requests) == _optimum(ordered, gap, cap)
    assert len(merge("hr", tags, gap=gap, cap=cap)) == len(requests)
