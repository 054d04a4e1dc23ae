"""Parts as the counters added them over a stretch of time, and good/reject/total from them."""

from __future__ import annotations

from rules.counters import OK


class Parts:
    """Parts the counters added over one stretch (a count interval, a link gap, a candidate
    state, a changeover), by the role of the counter, and the worst quality flag among them."""

    __slots__ = ("good", "quality", "reject", "total")

    def __init__(self) -> None:
        self.good = self.reject = self.total = 0
        self.quality = OK  # a rank of counters.QUALITIES

    def add(self, role: str, delta: int, quality: int = OK) -> None:
        if role == "good_count":
            self.good += delta
        elif role == "reject_count":
            self.reject += delta
        else:
            self.total += delta
        if quality > self.quality:
            self.quality = quality

    def flag(self, quality: int) -> None:
        """A change that added no parts but says something (a reset to zero, say)."""
        if quality > self.quality:
            self.quality = quality

    def take(self, other: Parts) -> None:
        """Add another stretch's parts to these (the other keeps its own)."""
        self.good += other.good
        self.reject += other.reject
        self.total += other.total
        if other.quality > self.quality:
            self.quality = other.quality

    def clear(self) -> None:
        self.good = self.reject = self.total = 0
        self.quality = OK

    def __bool__(self) -> bool:
        return bool(self.total or self.good or self.reject)


class CounterRoles:
    """Which counters a machine has (good, reject, total), and how the parts they added
    become good, reject and total: any two give the third.

    Counters are read at slightly different moments: where one stretch's good would exceed
    its total, the excess is carried into the next (`carry_good`, `carry_reject`), so sums
    stay exact.
    """

    __slots__ = ("carry_good", "carry_reject", "good", "reject", "total")

    def __init__(self, roles: set[str]) -> None:
        self.good = "good_count" in roles
        self.reject = "reject_count" in roles
        self.total = "total_count" in roles
        self.carry_good = self.carry_reject = 0

    def split(self, parts: Parts) -> tuple[int, int, int]:
        """(good, reject, total) of the parts."""
        g, r, t = parts.good, parts.reject, parts.total
        if self.good and self.reject:
            return g, r, g + r
        if self.total and self.good:
            g += self.carry_good
            if g > t:
                self.carry_good = g - t
                return t, 0, t
            self.carry_good = 0
            return g, t - g, t
        if self.total and self.reject:
            r += self.carry_reject
            if r > t:
                self.carry_reject = r - t
                return 0, t, t
            self.carry_reject = 0
            return t - r, r, t
        if self.total:
            return t, 0, t
        if self.good:
            return g, 0, g
        return 0, r, r
