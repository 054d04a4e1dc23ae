"""The open count interval: parts counted since it began, closed on the grid or at a change."""

from __future__ import annotations

import math

from rules.counters import QUALITIES
from rules.drafts import Drafts
from rules.parts import CounterRoles, Parts

INF = math.inf
# An interval with no parts in these buckets is not reported.
QUIET = ("unknown", "not_scheduled")


class CountInterval:
    """Owns the open count interval: its `start`, the `parts` counted since, and `closes`,
    the next point of the `length_s` grid (on the clock's grid, so intervals of every machine
    line up). A machine without counters has no count intervals."""

    __slots__ = ("closes", "drafts", "has_counters", "length_s", "parts", "roles", "start")

    def __init__(
        self, length_s: float, roles: CounterRoles, drafts: Drafts, has_counters: bool
    ) -> None:
        self.length_s = length_s
        self.roles = roles
        self.drafts = drafts
        self.has_counters = has_counters
        self.start = 0.0
        self.parts = Parts()
        self.closes = INF

    def grid_after(self, t: float) -> float:
        """The first point of the grid after t (never, without counters)."""
        if not self.has_counters:
            return INF
        return (math.floor(t / self.length_s) + 1) * self.length_s

    def skip(self, e: float, limit: float) -> None:
        """Nothing to report from e (unknown or off shift): jump to the last grid point
        before `limit`, when something can happen, so a long gap costs no loop per interval."""
        last = max(e, math.floor(limit / self.length_s) * self.length_s)
        self.start = last
        self.closes = last + self.length_s

    def close(
        self,
        t: float,
        published: str | None,
        order: str | None,
        shift: str | None,
        ideal_cycle_time_s: float | None,
        *,
        final: bool = False,
    ) -> None:
        """Close the interval at t (a no-op unless t is after its start) and report its
        parts; an empty interval while unknown or off shift is not reported.

        `final`: nothing may carry past t (an order or shift boundary, a flush), so parts
        counted at the interval's very start — in the reading that also shows the order
        switch, or the last one before a flush — are reported as a record of no length."""
        start = self.start
        if t < start or (t == start and not (final and self.parts)):
            return
        self.start = t
        if not self.has_counters:
            return
        parts = self.parts
        counted = self.roles.split(parts)
        quality = parts.quality
        parts.clear()
        if not (counted[0] or counted[1]) and published in QUIET:
            return
        self.drafts.count(t, start, counted, QUALITIES[quality], ideal_cycle_time_s, order, shift)
