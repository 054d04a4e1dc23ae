"""A machine's own time, and what comes due in it, processed in time order."""

from __future__ import annotations

import math
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any

from rules.calendar import ShiftCursor
from rules.debounce import StateDebouncer
from rules.downtime_tracker import DowntimeTracker
from rules.inferred import CountWatch
from rules.interval import CountInterval

INF = math.inf
# A reading stamped further ahead of the gateway's clock (the ticks) counts at the clock's
# time: a PLC with a wrong clock must not drag its machine into the future.
MAX_AHEAD_S = 300.0

At = Callable[[float], None]


class MachineTime:
    """Owns the machine's time: `now` (the latest of its readings' timestamps and the ticks;
    a late reading counts at now), the gateway's `clock` (the latest tick), and `deadline`,
    the earliest instant something is due — the count interval's close, the end of the
    shift segment, a candidate state's decision, an inferred stop, a downtime becoming news
    — which `advance` processes in time order (ties in that order), each at its instant."""

    __slots__ = (
        "clock",
        "deadline",
        "debounce",
        "downtime",
        "interval",
        "now",
        "on_calendar",
        "on_confirm",
        "on_grid",
        "on_no_parts",
        "on_restart",
        "on_start",
        "restored",
        "shift",
        "started",
        "stats",
        "ts_obj",
        "ts_val",
        "watch",
    )

    def __init__(
        self,
        interval: CountInterval,
        shift: ShiftCursor,
        debounce: StateDebouncer,
        watch: CountWatch,
        downtime: DowntimeTracker,
        stats: Tally[str],
    ) -> None:
        self.interval = interval
        self.shift = shift
        self.debounce = debounce
        self.watch = watch
        self.downtime = downtime
        self.stats = stats
        self.started = False  # the first reading or tick starts the machine's time
        self.restored = False  # taken up from a snapshot; the time since is a gap
        self.now = -INF
        self.deadline = -INF
        self.clock = INF  # INF until there is a tick
        self.ts_obj: object = None  # the last timestamp object read, and its value
        self.ts_val = 0.0
        # What the machine does when its time starts or restarts, and when each thing is due.
        self.on_start: At = _nothing
        self.on_restart: At = _nothing
        self.on_grid: Callable[[float, float], None] = _nothing_until
        self.on_calendar: At = _nothing
        self.on_confirm: At = _nothing
        self.on_no_parts: At = _nothing

    def of(self, ts: Any) -> float:
        """The machine time of a reading: its timestamp, never before what was processed;
        whatever was due before it is processed first."""
        if ts is self.ts_obj:
            t = self.ts_val
        else:
            t = ts.timestamp()
            if t > self.clock + MAX_AHEAD_S:
                self.stats["reading ahead of the clock"] += 1
                t = self.clock
            self.ts_obj = ts
            self.ts_val = t
        if t >= self.deadline:
            self.advance(t)
        if t <= self.now:
            return self.now
        self.now = t
        return t

    def settle(self) -> None:
        """After a reading: when is something due next (now, perhaps)."""
        self.deadline = min(
            self.interval.closes,
            self.shift.segment.end,
            self.debounce.due,
            self.watch.due,
            self.downtime.announce_due,
        )
        if self.deadline <= self.now:
            self.advance(self.now)

    def advance(self, t: float) -> None:
        """Process everything due up to and including t, in time order."""
        if not self.started:
            self.started = True
            self.now = t
            self.on_start(t)
        if self.restored:
            self.restored = False
            self.on_restart(self.now)
        interval, shift, debounce = self.interval, self.shift, self.debounce
        watch, downtime = self.watch, self.downtime
        while True:
            e = interval.closes
            kind = 0
            if shift.segment.end <= e:
                e = shift.segment.end
                kind = 1
            if debounce.due < e:
                e = debounce.due
                kind = 2
            if watch.due < e:
                e = watch.due
                kind = 3
            if downtime.announce_due < e:
                e = downtime.announce_due
                kind = 4
            if e > t:
                break
            if e > self.now:
                self.now = e
            if kind == 0:
                self.on_grid(e, t)
            elif kind == 1:
                self.on_calendar(e)
            elif kind == 2:
                self.on_confirm(e)
            elif kind == 3:
                self.on_no_parts(e)
            else:
                downtime.announce()
        if t > self.now:
            self.now = t
        self.deadline = min(
            interval.closes, shift.segment.end, debounce.due, watch.due, downtime.announce_due
        )


def _nothing(t: float) -> None:
    pass


def _nothing_until(e: float, t: float) -> None:
    pass
