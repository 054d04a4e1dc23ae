"""Coalescing: the fewest read requests that cover a device's tags.

Tags of one table are sorted by address and merged into one request while the hole
between them is at most `max_gap` registers (16 bits per register for coils and discrete
inputs: the same bytes on the wire) and the request stays within the device's cap
(`max_registers` ≤ 125, `max_bits` ≤ 2000, the protocol's limits). Overlapping tags (a
register and a bit of it) always share a request. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from connectors.modbus.address import BIT_TABLES, FUNCTION_CODES, Table, TagSpec

_TABLES: tuple[Table, ...] = ("hr", "ir", "coil", "di")
OVERLAP_ONLY = -1  # a "gap" that only lets overlapping tags share a request


@dataclass(frozen=True, slots=True)
class Request:
    """One read: `count` registers or bits of `table` from `start`, serving `tags`."""

    table: Table
    start: int
    count: int
    tags: tuple[TagSpec, ...]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.table]

    @property
    def has_gaps(self) -> bool:
        """Whether the request reads registers or bits that no tag asked for."""
        covered: set[int] = set()
        for tag in self.tags:
            covered.update(range(tag.start, tag.end))
        return len(covered) < self.count

    def __str__(self) -> str:
        return f"{self.table}:{self.start}+{self.count}"


def plan(
    specs: Iterable[TagSpec],
    *,
    max_gap: int = 16,
    max_registers: int = 125,
    max_bits: int = 2000,
    one_request_per_tag: bool = False,
) -> list[Request]:
    """The requests reading every tag, in table then address order."""
    by_table: dict[Table, list[TagSpec]] = {table: [] for table in _TABLES}
    for spec in specs:
        by_table[spec.table].append(spec)
    requests: list[Request] = []
    for table, tags in by_table.items():
        bits = table in BIT_TABLES
        cap = max_bits if bits else max_registers
        gap = max_gap * 16 if bits else max_gap
        if one_request_per_tag:
            gap = OVERLAP_ONLY
        requests += merge(table, tags, gap=gap, cap=cap)
    return requests


def merge(table: Table, tags: Sequence[TagSpec], *, gap: int, cap: int) -> list[Request]:
    """Greedy merge in address order: extend the request while the hole ≤ gap and size ≤ cap."""
    requests: list[Request] = []
    group: list[TagSpec] = []
    start = end = 0
    for tag in sorted(tags, key=lambda t: (t.start, t.end)):
        if tag.size > cap:
            raise ValueError(f"tag {tag.name} spans {tag.size}, more than one request ({cap})")
        if group and tag.start - end <= gap and max(end, tag.end) - start <= cap:
            group.append(tag)
            end = max(end, tag.end)
            continue
        if group:
            requests.append(Request(table, start, end - start, tuple(group)))
        group, start, end = [tag], tag.start, tag.end
    if group:
        requests.append(Request(table, start, end - start, tuple(group)))
    return requests


def split(request: Request) -> list[Request]:
    """Smaller requests for the same tags, after the device refused `request`.

    First without holes (the hole may be what the device refuses), then one request per
    tag (tags sharing registers stay together). A request that cannot be split further is
    returned as it is.
    """
    for gap in (0, OVERLAP_ONLY):
        if gap == 0 and not request.has_gaps:
            continue
        parts = merge(request.table, request.tags, gap=gap, cap=request.count)
        if len(parts) > 1:
            return parts
    return [request]
