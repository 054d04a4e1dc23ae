"""The downtime tracker: opens, announces, updates, suspends and ends a machine's downtimes
as its published state changes, with micro-stops, reasons and splits at boundaries."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

from common.events import DowntimeData
from rules.calendar import ms_of, utc
from rules.downtime import Downtime, downtime_id
from rules.drafts import Drafts
from rules.reasons import Reason

INF = math.inf
# The buckets a downtime is kept for: own stops, setup, and stops caused up- or downstream.
DOWN = ("down", "changeover", "starved", "blocked")
EXTERNAL = ("starved", "blocked")

Resolve = Callable[[bool], Reason | None]  # the reason now (for a changeover?)
Moment = Callable[[], tuple[str | None, str | None, float]]  # order, shift, machine time


class DowntimeTracker:
    """Owns the machine's open downtime (`open`), when it becomes news (`announce_due`: once
    it has lasted `min_state_s`), where a chain of stops began (`chain_start`: a stop
    that only changes kind is one stop for the micro-stop rule), and the last id given."""

    __slots__ = (
        "announce_due",
        "chain_start",
        "drafts",
        "external_loss",
        "last_id",
        "machine",
        "micro_loss",
        "micro_stop_s",
        "min_state_s",
        "moment",
        "open",
        "resolve",
    )

    def __init__(
        self,
        machine: str,
        drafts: Drafts,
        *,
        min_state_s: float,
        micro_stop_s: float,
        micro_loss: str,
        external_loss: str,
        resolve: Resolve,
        moment: Moment,
    ) -> None:
        self.machine = machine
        self.drafts = drafts
        self.min_state_s = min_state_s
        self.micro_stop_s = micro_stop_s
        self.micro_loss = micro_loss
        self.external_loss = external_loss
        self.resolve = resolve
        self.moment = moment
        self.open: Downtime | None = None
        self.announce_due = INF
        self.chain_start: float | None = None
        self.last_id: tuple[int, int] = (0, 0)

    def follow(self, t: float, bucket: str, from_unknown: bool = False) -> None:
        """Open, continue, suspend or end the downtime as the published bucket changes.

        A downtime partly out of sight (a link gap, the gateway away), or first seen when
        the machine came back into sight, lasted longer than anyone saw: never a micro-stop.
        """
        dt = self.open
        if dt is not None:
            if dt.suspended is not None:
                if bucket == "unknown":
                    return
                if (
                    bucket == dt.kind or (bucket == "idle" and dt.kind == "down")
                ) and self.same_cause(dt):
                    dt.suspended = None
                    return
                # It ended while out of sight; the last moment it was seen is its end. How
                # long it really lasted nobody saw: never a micro-stop.
                self.end(dt.suspended, natural=False)
                if bucket == "running":
                    self.chain_start = None
            elif bucket == "unknown":
                dt.suspended = t
                dt.unseen = True
                return
            elif bucket == dt.kind or (bucket == "idle" and dt.kind == "down"):
                return
            else:
                self.end(t, natural=bucket == "running")
        if bucket == "running":
            self.chain_start = None
        elif bucket in DOWN:
            self.start(t, bucket, None)
            if from_unknown and self.open is not None:
                self.open.unseen = True

    def same_cause(self, dt: Downtime) -> bool:
        """Whether a downtime seen again after an outage is still the same stop: it is,
        unless the PLC now names another reason than the one it had."""
        if dt.reason is None or dt.reason.source != "plc":
            return True
        found = self.resolve(dt.kind == "changeover")
        return found is None or found.source != "plc" or found.code == dt.reason.code

    def start(self, t: float, kind: str, reason: Reason | None) -> None:
        if self.chain_start is None:
            self.chain_start = t
        if reason is None:
            reason = self.resolve(kind == "changeover")
        order, shift, now = self.moment()
        ident, self.last_id = downtime_id(self.machine, t, self.last_id)
        dt = Downtime(ident, kind, t, order, shift, reason)
        self.open = dt
        if self.min_state_s > 0 and now < t + self.min_state_s:
            dt.announced = False  # news once it has lasted min_state_s (see announce)
            self.announce_due = t + self.min_state_s
        else:
            self._emit("downtime.started", t, dt)

    def announce(self) -> None:
        """The open downtime has lasted min_state_s: it is news."""
        self.announce_due = INF
        dt = self.open
        if dt is not None and not dt.announced:
            dt.announced = True
            self._emit("downtime.started", dt.start, dt)

    def end(self, end: float, natural: bool) -> None:
        """The open downtime ends at `end`: `natural` when the machine runs again (only
        then can it be a micro-stop), else cut by a boundary or the machine out of sight."""
        dt = self.open
        assert dt is not None
        self.open = None
        end = max(end, dt.start)
        if not dt.announced:
            self.announce_due = INF
            if end - dt.start < self.min_state_s or end <= dt.start:
                # Shorter than min_state_s: never a downtime. Its id is free again.
                ms, n = self.last_id
                if ms == ms_of(dt.start) and n > 0:
                    self.last_id = (ms, n - 1)
                if natural:
                    self.chain_start = None
                return
            dt.announced = True
            self._emit("downtime.started", dt.start, dt)
        micro = False
        if natural:
            began = self.chain_start if self.chain_start is not None else dt.start
            # A changeover is setup however short: availability, never a micro-stop; nor is
            # a stop caused up- or downstream.
            micro = dt.kind == "down" and not dt.unseen and end - began < self.micro_stop_s
            self.chain_start = None
        self._emit("downtime.ended", end, dt, end=end, micro=micro)

    def reason_changed(self, t: float) -> None:
        """The readings may name another reason for the open downtime."""
        dt = self.open
        if dt is None or dt.suspended is not None:
            return
        found = self.resolve(dt.kind == "changeover")
        if found is None:
            return  # a reason once known is kept when the PLC clears its first-out
        current = dt.reason
        if current is not None:
            if current.source == "plc" and found.source != "plc":
                return
            if current.code == found.code:
                return
        dt.reason = found
        if dt.announced:
            self._emit("downtime.updated", t, dt)

    def cut(self, t: float) -> Downtime | None:
        """An order or shift boundary at t: the open downtime ends there; the one to carry
        on after the boundary, if any (a suspended one ended when last seen: none)."""
        carried = self.open
        if carried is not None:
            if carried.suspended is not None:
                self.end(carried.suspended, natural=False)
                return None
            self.end(t, natural=False)
        return carried

    def resume(self, t: float, bucket: str, carried: Downtime | None) -> None:
        """After a boundary at t, in `bucket`: the stop goes on as a new downtime (with the
        reason it had, when it is the same kind of stop)."""
        if bucket in DOWN:
            same = carried is not None and carried.kind == bucket
            self.start(t, bucket, carried.reason if same and carried else None)
        elif bucket == "idle" and carried is not None:
            self.start(t, carried.kind, carried.reason)
        elif bucket == "running":
            self.chain_start = None

    def _emit(
        self,
        kind: str,
        t: float,
        dt: Downtime,
        end: float | None = None,
        micro: bool | None = None,
    ) -> None:
        r = dt.reason
        loss = r.loss if r is not None else "availability"
        if micro and loss != "planned":
            loss = self.micro_loss
        if dt.kind in EXTERNAL and loss != "planned":
            loss = self.external_loss
        if dt.kind == "changeover" or dt.kind in EXTERNAL:
            category: str | None = dt.kind
        else:
            category = r.category if r else None
        data = DowntimeData.model_construct(
            downtime_id=dt.id,
            start=utc(dt.start),
            end=None if end is None else utc(end),
            # From the stored (millisecond) start and end, so that it is their difference.
            duration_s=None if end is None else (ms_of(end) - ms_of(dt.start)) / 1000,
            reason_code=None if r is None else r.code,
            reason_text=None if r is None else r.text,
            category=category,
            planned=False if r is None else r.planned,
            source="auto",
            micro_stop=micro,
            loss=cast(Any, loss),
        )
        self.drafts.add(kind, t, data, dt.order, dt.shift)
