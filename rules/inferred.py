"""Inferred stops: a machine that makes no part for `down_after` seconds is down."""

from __future__ import annotations

import math

INF = math.inf


class CountWatch:
    """Owns whether parts are coming: the `first` counter reading since the data came back,
    the `last` part, and the inferred stop (`stopped`), due at `due` (the last part, or when
    watching began, `since`, plus `down_after`) while the watch is armed."""

    __slots__ = (
        "cycles",
        "default_s",
        "down_after",
        "due",
        "first",
        "fixed_s",
        "last",
        "since",
        "stopped",
    )

    def __init__(self, fixed_s: float | None, cycles: float, default_s: float) -> None:
        # down_after: the machine's own setting, else `cycles` ideal cycle times, else default
        self.fixed_s = fixed_s
        self.cycles = cycles
        self.default_s = default_s
        self.down_after = default_s
        self.first: float | None = None
        self.last = -INF
        self.since = -INF
        self.stopped = False
        self.due = INF

    def cycle_time(self, ideal_cycle_time_s: float | None) -> None:
        """The ideal cycle time now (the order's or the machine's) sets down_after."""
        if self.fixed_s is not None:
            self.down_after = self.fixed_s
        elif ideal_cycle_time_s is not None:
            self.down_after = self.cycles * ideal_cycle_time_s
        else:
            self.down_after = self.default_s

    @property
    def reason(self) -> str:
        return f"no count for {self.down_after:g} s"

    def arm(self, active: bool, t: float) -> None:
        """Watch from t for the next part (or go on watching), or stop watching."""
        if active:
            if self.due == INF:
                self.since = t
            self.due = max(self.last, self.since) + self.down_after
        else:
            self.due = INF

    def part(self, t: float) -> bool:
        """A part at t; whether it ends an inferred stop."""
        self.last = t
        if self.stopped:
            self.stopped = False
            return True
        return False

    def forget(self) -> None:
        """The data is gone (link down, gateway stopped): watch afresh when it is back."""
        self.first = None
        self.last = -INF
        self.stopped = False
        self.due = INF
