"""Cumulative PLC counters → part deltas, each classified by what the counter physically did.

`new >= old`: delta `new - old`, a spike when faster than the machine can make parts.
`new < old`: a wrap when `modulus - old + new` parts fit the machine's maximum rate over
the elapsed time; otherwise a reset (delta `new`, the parts since the reset). A counter that
cannot be reset but went back further than any wrap is counted the same way and flagged a
spike: it did something its physics does not allow, and the clerk must look at it. Without
a maximum rate a decrease is a reset when the counter may be reset, else a wrap.
"""

from __future__ import annotations

from typing import Any

from gateway.events import CountQuality

# Quality flags by rank: an interval holding several deltas carries the highest.
QUALITIES: tuple[CountQuality, ...] = ("ok", "wrap", "restart", "gap", "reset", "spike")
OK, WRAP, RESTART, GAP, RESET, SPIKE = range(6)
RANK = {name: rank for rank, name in enumerate(QUALITIES)}

# Timestamps jitter (Modbus: the time a response arrived); allow one second and one part.
_SLACK_S = 1.0

# A stand-in that equals no value, so a counter needing attention never takes the fast path.
ATTENTION: Any = object()


def as_count(value: Any, modulus: int | None) -> int | None:
    """The value as a counter reading, or None when no counter can read so."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        count = value
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    else:
        return None
    if count < 0 or (modulus is not None and count >= modulus):
        return None
    return count


class Counter:
    """One counter tag: its physics and last accepted raw value."""

    __slots__ = ("gap", "modulus", "raw", "resettable", "role", "same", "stale", "tag", "ts")

    def __init__(self, tag: str, role: str, modulus: int | None, resettable: bool) -> None:
        self.tag = tag
        self.role = role
        self.modulus = modulus
        self.resettable = resettable
        self.raw: int | None = None  # last accepted raw value
        self.ts = 0.0  # its time
        self.stale = False  # a read failed or made no sense since: the next delta is flagged
        self.gap = False  # the next delta covers a link gap or a gateway restart
        # What an unchanged reading must equal to be skipped: the raw value, or ATTENTION.
        self.same: Any = ATTENTION

    def settle(self) -> None:
        self.same = self.raw if not (self.stale or self.gap or self.raw is None) else ATTENTION

    def classify(self, value: int, t: float, max_rate: float | None) -> tuple[int, int]:
        """(delta, quality rank) of a new reading against the last accepted one."""
        old = self.raw
        assert old is not None
        elapsed = max(0.0, t - self.ts)
        allowed = None if max_rate is None else max_rate * (elapsed + _SLACK_S) + 1
        if value >= old:
            delta = value - old
            return delta, SPIKE if allowed is not None and delta > allowed else OK
        wrapped = None if self.modulus is None else self.modulus - old + value
        if wrapped is not None:
            if allowed is None and not self.resettable:
                return wrapped, WRAP
            if allowed is not None and wrapped <= allowed:
                return wrapped, WRAP
        if not self.resettable:
            return value, SPIKE
        return value, SPIKE if allowed is not None and value > allowed else RESET

    def to_json(self) -> dict[str, Any]:
        return {"raw": self.raw, "ts": self.ts, "stale": self.stale, "gap": self.gap}

    def load(self, data: dict[str, Any]) -> None:
        raw = data.get("raw")
        self.raw = raw if raw is None else as_count(raw, self.modulus)
        self.ts = float(data.get("ts", 0.0))
        self.stale = bool(data.get("stale", False))
        self.gap = bool(data.get("gap", False))
        self.settle()
