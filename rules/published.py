"""The published state: what the machine is said to be doing, by the rules' precedence."""

from __future__ import annotations

import math
from collections.abc import Callable

from rules.calendar import ShiftCursor
from rules.debounce import Candidate, StateDebouncer
from rules.downtime import Downtime
from rules.downtime_tracker import DowntimeTracker
from rules.drafts import Drafts, StateTriple
from rules.interval import CountInterval
from rules.work_order import OrderTracker

# The order, shift and ideal cycle time at the moment: what a closing interval belongs to.
Where = Callable[[], tuple[str | None, str | None, float | None]]


class PublishedState:
    """Owns the state as published (`bucket`, since `since`): the calendar overrides the
    machine (a break is `planned_stop`, off shift `not_scheduled`), a changeover overrides
    its stops, else the machine's own debounced state. A change closes the count interval
    there, is published, and the downtime tracker follows it."""

    __slots__ = (
        "bucket",
        "debounce",
        "downtime",
        "drafts",
        "interval",
        "orders",
        "shift",
        "since",
        "where",
    )

    def __init__(
        self,
        shift: ShiftCursor,
        debounce: StateDebouncer,
        orders: OrderTracker,
        interval: CountInterval,
        downtime: DowntimeTracker,
        drafts: Drafts,
        where: Where,
    ) -> None:
        self.shift = shift
        self.debounce = debounce
        self.orders = orders
        self.interval = interval
        self.downtime = downtime
        self.drafts = drafts
        self.where = where
        self.bucket: str | None = None
        self.since = -math.inf

    def effective(self) -> StateTriple:
        """The state to publish now."""
        kind = self.shift.segment.kind
        if kind == "off":
            return "not_scheduled", None, "outside shifts"
        if kind == "break":
            return "planned_stop", None, "break"
        debounce = self.debounce
        if debounce.bucket != "unknown" and self.orders.changeover:
            return "changeover", None, "changeover"
        return debounce.bucket, debounce.code, debounce.reason

    def apply(self, t: float) -> None:
        """Publish the state at t if it is another bucket than the published one."""
        state = self.effective()
        if state[0] != self.bucket:
            self.publish(t, state)

    def publish(self, t: float, state: StateTriple) -> None:
        was = self.bucket
        self.cut(t)
        self.bucket = state[0]
        self.since = t
        order, shift, _ = self.where()
        self.drafts.state(t, state, order, shift)
        self.downtime.follow(t, state[0], from_unknown=was == "unknown")

    def confirmed(self, candidate: Candidate) -> None:
        """The debouncer confirmed a candidate: published from when it began (unless
        something else was published since, a break, say); its held parts go with it."""
        state = self.effective()
        if state[0] != self.bucket:
            self.close(candidate.split)
            self.interval.parts.take(candidate.parts)
            self.publish(max(candidate.since, self.since), state)
        else:
            self.interval.parts.take(candidate.parts)

    def lost(self, t: float) -> None:
        """The machine went out of sight at t: published so, or the interval closed there."""
        state = self.effective()
        if state[0] != self.bucket:
            self.publish(t, state)
        else:
            self.close(t)

    def anew(self, t: float, carried: Downtime | None) -> None:
        """After an order or shift boundary at t: the state is published again, and a stop
        carried over the boundary goes on as a new downtime."""
        state = self.effective()
        self.bucket = state[0]
        self.since = t
        order, shift, _ = self.where()
        self.drafts.state(t, state, order, shift)
        self.downtime.resume(t, state[0], carried)

    def cut(self, t: float, *, final: bool = False) -> None:
        """Close the count interval at t, with the parts a candidate holds from before t."""
        self.debounce.release(t)
        self.close(t, final=final)

    def close(self, t: float, *, final: bool = False) -> None:
        """Close the count interval at t (it belongs to the order and shift of now);
        `final` as in CountInterval.close."""
        order, shift, ict = self.where()
        self.interval.close(t, self.bucket, order, shift, ict, final=final)
