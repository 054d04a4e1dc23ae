"""Cumulative PLC counters -> part deltas, each classified by what the counter physically did.

`new >= old`: delta `new - old`; faster than the machine can make parts (`rate_tolerance` /
ideal cycle time, over the last minute or more of the counter's history, gaps included) it
is a spike and *held*: not counted, kept for a clerk.

`new < old`: a wrap when `modulus - old + new` parts fit the machine's maximum rate over the
time since the old value was last seen; else, for a counter the PLC may reset, a reset to
zero (delta `new`, the parts since the reset) when `new` parts fit that time. A decrease to
exactly zero is a reset of any counter (it claims no parts). Anything else (a counter back
at a preset after a PLC restart while the gateway was away, a counter that is never reset
going back to a small number) is held as a `decrease`.

Without a maximum rate nothing can be judged against time: a decrease is a reset when the
counter may be reset, else a wrap (a held decrease when it has no modulus either), and no
increase is a spike.
"""

from __future__ import annotations

import math
from typing import Any

from common.events import CountQuality

# Quality flags by rank: an interval holding several deltas carries the highest. A spike is
# held, never counted; the flag stays in the contract for records of older gateways.
QUALITIES: tuple[CountQuality, ...] = ("ok", "wrap", "restart", "gap", "reset", "spike")
OK, WRAP, RESTART, GAP, RESET, SPIKE = range(6)
# What classify() says of a change it cannot vouch for (quality HELD, with its reason).
HELD = -1
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


# Plausibility is judged over at least this long a stretch of the counter's history: a PLC
# that books parts in steps (a case packer adding 12 at once) passes, a jump of thousands
# does not.
WINDOW_S = 60.0


class Counter:
    """One counter tag: its physics, last accepted raw value and recent counted parts.

    `counted` is every part this counter has added since the gateway first saw it; the
    plausibility window runs from `since_ts` (when `counted` was `since_parts`), and is moved
    on in two steps so it always spans at least WINDOW_S once the counter is that old.
    """

    __slots__ = (
        "counted",
        "gap",
        "mid_parts",
        "mid_ts",
        "modulus",
        "raw",
        "resettable",
        "role",
        "same",
        "since_parts",
        "since_ts",
        "stale",
        "tag",
        "ts",
    )

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
        self.counted = 0
        self.since_ts = self.mid_ts = -math.inf  # -inf: set at the first reading
        self.since_parts = self.mid_parts = 0

    def settle(self) -> None:
        self.same = self.raw if not (self.stale or self.gap or self.raw is None) else ATTENTION

    def start(self, value: int, t: float) -> None:
        """The first reading: the baseline, and the start of the plausibility window."""
        self.raw, self.ts = value, t
        if self.since_ts == -math.inf:
            self.since_ts = self.mid_ts = t
            self.since_parts = self.mid_parts = self.counted

    def allowance(self, t: float, max_rate: float | None) -> int | None:
        """The most parts a change at t can add: what the machine can make over the window,
        less what the window already holds (None: no maximum rate known)."""
        if max_rate is None:
            return None
        since = self.since_ts if self.since_ts != -math.inf else self.ts
        made = self.counted - self.since_parts
        return max(0, math.floor(max_rate * (max(0.0, t - since) + _SLACK_S)) + 1 - made)

    def classify(self, value: int, t: float, max_rate: float | None) -> tuple[int, int, int | None]:
        """(delta, quality rank or HELD, plausible maximum) of a new reading against the last
        accepted one; a HELD delta is the number of parts the change claims.

        An increase is judged over the window (parts may come in steps); what a decrease can
        be (a wrap, a reset) is judged over the time since the old value was last seen,
        since that is when it happened.
        """
        old = self.raw
        assert old is not None
        if value >= old:
            delta = value - old
            allowed = self.allowance(t, max_rate)
            return delta, HELD if allowed is not None and delta > allowed else OK, allowed
        allowed = (
            None
            if max_rate is None
            else math.floor(max_rate * (max(0.0, t - self.ts) + _SLACK_S)) + 1
        )
        wrapped = None if self.modulus is None else self.modulus - old + value
        if wrapped is not None:
            if allowed is None and not self.resettable:
                return wrapped, WRAP, allowed
            if allowed is not None and wrapped <= allowed:
                return wrapped, WRAP, allowed
        if value == 0 or (self.resettable and (allowed is None or value <= allowed)):
            return value, RESET, allowed
        return value, HELD, allowed

    def accept(self, value: int, t: float, parts: int) -> None:
        """Take the reading as the new baseline; `parts` of it were counted."""
        self.raw, self.ts = value, t
        self.counted += parts
        if t - self.mid_ts >= WINDOW_S:
            self.since_ts, self.since_parts = self.mid_ts, self.mid_parts
            self.mid_ts, self.mid_parts = t, self.counted

    def read(
        self, value: int, t: float, max_rate: float | None
    ) -> tuple[int, int, tuple[int, int, int, int | None, float] | None]:
        """Take a good reading (after the first): (parts counted, quality rank, and what is
        held, if the change cannot be vouched for: old and new raw value, the parts it
        claims, the plausible maximum, since when). A held change counts no parts."""
        old, since = self.raw, self.ts
        assert old is not None
        delta, quality, allowed = self.classify(value, t, max_rate)
        held = None
        if quality == HELD:
            held = (old, value, delta, allowed, since)
            delta, quality = 0, OK
        self.accept(value, t, delta)
        if self.stale:  # a read failed since the last good one: the delta is flagged
            quality = max(quality, GAP)
            self.stale = False
        return delta, quality, held

    def unreadable(self) -> None:
        """A reading that could not be read, or makes no sense as a count."""
        self.stale = self.raw is not None
        self.settle()

    @staticmethod
    def held_reason(value: int, old: int) -> str:
        return "spike" if value >= old else "decrease"

    def to_json(self) -> dict[str, Any]:
        return {
            "raw": self.raw,
            "ts": self.ts,
            "stale": self.stale,
            "gap": self.gap,
            "window": [
                self.counted,
                _finite(self.since_ts),
                self.since_parts,
                _finite(self.mid_ts),
                self.mid_parts,
            ],
        }

    def load(self, data: dict[str, Any]) -> None:
        raw = data.get("raw")
        self.raw = raw if raw is None else as_count(raw, self.modulus)
        self.ts = float(data.get("ts", 0.0))
        self.stale = bool(data.get("stale", False))
        self.gap = bool(data.get("gap", False))
        window = data.get("window")
        if window is not None:
            counted, since_ts, since_parts, mid_ts, mid_parts = window
            self.counted, self.since_parts, self.mid_parts = (
                int(counted),
                int(since_parts),
                int(mid_parts),
            )
            self.since_ts = -math.inf if since_ts is None else float(since_ts)
            self.mid_ts = -math.inf if mid_ts is None else float(mid_ts)
        self.settle()


def _finite(t: float) -> float | None:
    return t if math.isfinite(t) else None
