"""Parts made while the machine was out of sight (a link gap, the gateway away)."""

from __future__ import annotations

import itertools
import math

from rules.counters import GAP, QUALITIES, Counter
from rules.drafts import Drafts
from rules.parts import CounterRoles, Parts

# Where the gap's time went: from `start`, in this order and shift, at this ideal cycle time.
Stretch = tuple[float, str | None, str | None, float | None]


class CountGap:
    """Owns a gap in the machine's data: from `start` (out of sight) to `end` (back), of
    `kind` (GAP or RESTART), the `parts` the counters showed on their return, and the
    `stretches` (orders, shifts) it lasted over. The parts are counted once every counter
    is back, spread over the stretches by time, and flagged with the gap's kind."""

    __slots__ = ("counters", "drafts", "end", "kind", "parts", "roles", "start", "stretches")

    def __init__(self, counters: dict[str, Counter], roles: CounterRoles, drafts: Drafts) -> None:
        self.counters = counters
        self.roles = roles
        self.drafts = drafts
        self.start: float | None = None
        self.end: float | None = None
        self.kind = GAP
        self.stretches: list[Stretch] = []
        self.parts = Parts()

    def begin(self, t: float, kind: int, stretch: Stretch) -> None:
        """Out of sight from t (or still, since an earlier start: then it goes on)."""
        if self.start is None:
            self.start = t
            self.kind = kind
            self.stretches = [stretch]
            self.parts.clear()
        self.end = None
        for c in self.counters.values():
            if c.raw is not None:
                c.gap = True
            c.settle()

    def back(self, t: float) -> None:
        """The machine is in sight again at t."""
        if self.start is not None and self.end is None:
            self.end = t

    def boundary(self, stretch: Stretch) -> None:
        """An order or shift boundary while still out of sight: a new stretch begins."""
        if self.start is not None and self.end is None:
            self.stretches.append(stretch)

    def absorb(self, counter: Counter, delta: int, quality: int, now: float) -> int | None:
        """A counter's first change since the gap: its parts go to the gap (None), or, when
        the gap was already counted, where they land, flagged (the quality to count with)."""
        counter.gap = False
        counter.settle()
        if self.start is not None:
            self.parts.add(counter.role, delta, quality)
            self.counter_back(now)
            return None
        return max(quality, GAP)

    def counter_back(self, now: float) -> None:
        """A counter has reported across the gap; once all have, the gap is counted."""
        if self.start is not None and not any(c.gap for c in self.counters.values()):
            if self.end is None:
                self.end = now
            self.report()

    def report(self) -> None:
        """The parts counted across the gap, spread over its stretches by time."""
        start, end = self.start, self.end
        assert start is not None and end is not None
        good, reject, total = self.roles.split(self.parts)
        quality = QUALITIES[max(self.kind, self.parts.quality)]
        stretches = self.stretches
        self.start = self.end = None
        self.stretches = []
        self.parts.clear()
        for c in self.counters.values():
            if c.gap:  # never reported back: its next delta is flagged where it lands
                c.gap = False
                c.stale = True
                c.settle()
        if not total:
            return
        bounds = [max(s[0], start) for s in stretches] + [end]
        weights = [max(0.0, b - a) for a, b in itertools.pairwise(bounds)]
        if not any(weights):
            weights = [0.0] * (len(stretches) - 1) + [1.0]
        goods = spread(good, weights)
        rejects = spread(reject, weights)
        for i, (_, order, shift, ict) in enumerate(stretches):
            g, r = goods[i], rejects[i]
            if not (g or r):
                continue
            until = max(bounds[i], bounds[i + 1])
            self.drafts.count(until, bounds[i], (g, r, g + r), quality, ict, order, shift)


def spread(n: int, weights: list[float]) -> list[int]:
    """n split in proportion to the weights, in whole parts that sum to n (largest remainder)."""
    total = sum(weights)
    if n == 0 or total <= 0:
        return [0] * len(weights)
    shares = [n * w / total for w in weights]
    parts = [math.floor(s) for s in shares]
    order = sorted(range(len(weights)), key=lambda i: (parts[i] - shares[i], i))
    for i in order[: n - sum(parts)]:
        parts[i] += 1
    return parts
