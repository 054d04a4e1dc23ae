"""The machine's own state: what its readings say it does, before the calendar has a say."""

from __future__ import annotations

import math
from typing import Any

from rules.calendar import ShiftCursor
from rules.debounce import StateDebouncer
from rules.drafts import StateTriple
from rules.inferred import CountWatch
from rules.published import PublishedState
from rules.states import StateTag
from rules.work_order import OrderTracker

INF = math.inf


class OwnState:
    """Owns what the readings say the machine does: its state tag (`tag`), or for a machine
    without one its counts; a running machine that makes no parts is down (`watch`, armed
    only while a stop can be inferred); and every change goes through the debouncer."""

    __slots__ = (
        "debounce",
        "has_counters",
        "has_state_tag",
        "orders",
        "published",
        "shift",
        "tag",
        "watch",
    )

    def __init__(
        self,
        tag: StateTag,
        watch: CountWatch,
        debounce: StateDebouncer,
        *,
        has_state_tag: bool,
        has_counters: bool,
        orders: OrderTracker,
        shift: ShiftCursor,
        published: PublishedState,
    ) -> None:
        self.tag = tag
        self.watch = watch
        self.debounce = debounce
        self.has_state_tag = has_state_tag
        self.has_counters = has_counters
        self.orders = orders
        self.shift = shift
        self.published = published

    def says(self) -> StateTriple:
        """What the readings say the machine is doing, before debounce."""
        tag, watch = self.tag, self.watch
        if self.has_state_tag:
            if tag.bucket == "running" and watch.stopped:
                return "down", tag.code, watch.reason
            return tag.bucket, tag.code, tag.reason
        if not self.has_counters or watch.first is None:
            debounce = self.debounce
            unknown = debounce.reason if debounce.bucket == "unknown" else "no data yet"
            return "unknown", None, unknown
        if watch.stopped:
            return "down", None, watch.reason
        if watch.last >= watch.first:
            return "running", None, None
        return "unknown", None, "waiting for counts"

    def consider(self, since: float, now: float) -> None:
        """The readings may say something new since `since`: the debouncer weighs it."""
        self.debounce.consider(self.says(), since, self.published.since, now)

    def can_infer(self, link_up: bool) -> bool:
        """Whether a stop can be inferred now: in sight, counting, in a shift, not in a
        changeover, and running by the state tag (if any)."""
        return (
            self.has_counters
            and link_up
            and self.watch.first is not None
            and not self.watch.stopped
            and not self.orders.changeover
            and self.shift.segment.kind == "on"
            and (not self.has_state_tag or self.tag.bucket == "running")
        )

    def rearm(self, t: float, link_up: bool) -> None:
        self.watch.arm(self.can_infer(link_up), t)

    def no_parts(self, link_up: bool, now: float) -> None:
        """No part for `down_after`: the machine is down since its last part (or since the
        watch began)."""
        watch = self.watch
        watch.due = INF
        if not self.can_infer(link_up):
            return
        watch.stopped = True
        self.consider(max(watch.last, watch.since), now)

    def state_tag(self, value: Any, mode: Any, t: float, link_up: bool, now: float) -> None:
        """The state tag shows another value (or the mode beside it changed)."""
        if self.tag.read(value, mode):
            self.watch.stopped = False
            self.rearm(t, link_up)
            self.consider(t, now)

    def state_unreadable(self, why: str, t: float, link_up: bool, now: float) -> None:
        tag = self.tag
        if tag.bucket == "unknown" and tag.raw is tag.lost_value:
            return
        tag.lost(f"state tag unreadable: {why}")
        self.rearm(t, link_up)
        self.consider(t, now)

    def first_count(self, t: float, link_up: bool, now: float) -> None:
        """The first counter reading since the data came back."""
        self.watch.first = t
        self.rearm(t, link_up)
        self.consider(t, now)

    def part(self, t: float, link_up: bool, now: float) -> None:
        """Parts were made at t: the machine runs (an inferred stop ends there)."""
        watch = self.watch
        if watch.part(t):
            self.consider(t, now)
        elif self.debounce.bucket == "unknown" and not self.has_state_tag:
            self.consider(watch.first if watch.first is not None else t, now)
        self.rearm(t, link_up)

    def forget(self, reason: str) -> None:
        """Nothing is known any more (link down, gateway stopped or restarted)."""
        self.tag.lost(reason)
        self.watch.forget()
        self.debounce.forget(reason)
