"""One machine's production rules over time: counts, state, downtime, its order and shift.

Time is the machine's own: the latest of its samples' timestamps and the ticks; a late
sample counts at that time. Every change that happens at a known instant — a shift or break
boundary, the end of a count interval, a debounced state becoming certain, an inferred stop
— is processed at that instant, in time order, before the reading that revealed it.

A state change of the machine itself (its state tag, or the counts stopping and resuming)
is a candidate until it has lasted `min_state_s`, then dated from its start; counts are cut
at that instant too, so each count interval lies in one state, one order and one shift.

`Machine` is the conductor: its time (`MachineTime`, rules.machine_time) decides what is due
and when; it feeds each reading, and each instant that comes due, through parts that each
own one thing (README, Architecture): `MachineTags` (rules.tags), `Counter`
(rules.counters), `CountInterval` (rules.interval), `CountGap` (rules.gap), `OwnState`
(rules.own_state) with `StateTag` (rules.states) and `CountWatch` (rules.inferred),
`StateDebouncer` (rules.debounce), `PublishedState` (rules.published), `DowntimeTracker`
(rules.downtime_tracker), `OrderTracker` (rules.work_order) and `ShiftCursor`
(rules.calendar); `Drafts` (rules.drafts) writes the events.
"""

from __future__ import annotations

import math
from collections import Counter as Tally
from collections.abc import Callable
from typing import Any

from common.events import Draft
from common.sample import Link, Sample
from rules.calendar import Calendar, ShiftCursor
from rules.counters import ATTENTION, GAP, OK, RESTART, Counter, as_count
from rules.debounce import StateDebouncer
from rules.downtime_tracker import DowntimeTracker
from rules.drafts import Drafts
from rules.gap import CountGap
from rules.inferred import CountWatch
from rules.interval import QUIET, CountInterval
from rules.machine_time import MachineTime
from rules.orders import ActiveOrder, OrderBook
from rules.own_state import OwnState
from rules.parts import CounterRoles
from rules.published import PublishedState
from rules.spec import MachineSpec, PlantRules
from rules.states import StateTag
from rules.tags import MachineTags
from rules.work_order import OrderTracker

INF = math.inf


class Machine:
    """The rules of one machine; drafts go to the shared `out` list."""

    def __init__(
        self,
        spec: MachineSpec,
        plant: PlantRules,
        calendar: Calendar | None,
        book: OrderBook,
        out: list[Draft],
        stats: Tally[str] | None = None,
    ) -> None:
        rules = plant.rules
        self.spec = spec
        self.id = spec.id
        self._stats: Tally[str] = stats if stats is not None else Tally()
        self.ict = spec.ideal_cycle_time_s
        self.tags = MachineTags(spec, plant)
        # The tags' parts used on every reading, at hand.
        self.counters = self.tags.counters
        self.roles = self.tags.roles
        self.state_tag = self.tags.state_tag
        self.values = self.tags.values
        self.link_up = False  # the connector's link: no data while it is down

        # The parts, each owning one thing (see the module docstring).
        self.drafts = Drafts(spec.area, spec.line, spec.id, out)
        self.shift = ShiftCursor(calendar)
        self.counting = CounterRoles(set(self.roles.values()))
        self.interval = CountInterval(
            rules.count_interval_s, self.counting, self.drafts, bool(self.counters)
        )
        self.gap = CountGap(self.counters, self.counting, self.drafts)
        self.tag = StateTag(self.tags.table, spec.mode_tag)
        self.debounce = StateDebouncer(rules.min_state_s, self.interval)
        self.orders = OrderTracker(spec.id, book, self.drafts, self.counting, rules.changeover)
        self.watch = CountWatch(spec.down_after_s, rules.down_after_cycles, rules.down_after_s)
        micro_stop_s = spec.micro_stop_s if spec.micro_stop_s is not None else rules.micro_stop_s
        self.downtime = DowntimeTracker(
            spec.id,
            self.drafts,
            min_state_s=rules.min_state_s,
            micro_stop_s=micro_stop_s,
            micro_loss=rules.micro_stop_loss,
            external_loss=rules.starved_blocked_loss,
            resolve=self.tags.resolve,
            moment=lambda: (self.order_id, self.shift_id, self.time.now),
        )
        self.state = PublishedState(
            self.shift,
            self.debounce,
            self.orders,
            self.interval,
            self.downtime,
            self.drafts,
            lambda: (self.order_id, self.shift_id, self.ideal_cycle_time()),
        )
        self.own = OwnState(
            self.tag,
            self.watch,
            self.debounce,
            has_state_tag=self.state_tag is not None,
            has_counters=bool(self.counters),
            orders=self.orders,
            shift=self.shift,
            published=self.state,
        )
        self.watch.cycle_time(self.ideal_cycle_time())
        self.time = time = MachineTime(
            self.interval, self.shift, self.debounce, self.watch, self.downtime, self.stats
        )
        # What the machine does as its time passes.
        time.on_start = self._start
        time.on_restart = self._restart
        time.on_grid = self._grid
        time.on_calendar = self._calendar
        time.on_confirm = self._confirm
        time.on_no_parts = self._no_parts

    @property
    def stats(self) -> Tally[str]:
        """Inputs the rules could not use or did not count (shared by the engine's machines)."""
        return self._stats

    @stats.setter
    def stats(self, stats: Tally[str]) -> None:
        self._stats = self.time.stats = stats

    # -- identity of the moment ---------------------------------------------------------------

    @property
    def shift_id(self) -> str | None:
        shift = self.shift.segment.shift
        return None if shift is None else shift.shift_id

    @property
    def order_id(self) -> str | None:
        order = self.orders.active
        return None if order is None else order.order_id

    def ideal_cycle_time(self) -> float | None:
        return self.orders.ideal_cycle_time(self.ict)

    # -- readings -----------------------------------------------------------------------------

    def sample(self, s: Sample) -> None:
        t = self.time.of(s.ts)
        counter = self.counters.get(s.tag)
        if counter is not None:
            if s.value == counter.same and s.quality == "good":
                counter.ts = t  # still this value now: wraps are judged from here
                return
            self._counter(counter, s, t)
        else:
            role = self.roles.get(s.tag)
            if role is None:
                return
            if s.quality != "good":
                if role == "state":
                    self.own.state_unreadable(s.status or s.quality, t, self.link_up, self.time.now)
            else:
                if not self.link_up:
                    self._link_up(t)
                if role == "state":
                    self._state(s.value, t)
                elif role == "reason":
                    if self.values.get(s.tag, ATTENTION) != s.value:
                        self.values[s.tag] = s.value
                        self.downtime.reason_changed(t)
                elif role == "order":
                    switch, order = self.orders.from_plc(s.value, t)
                    if switch:
                        self._switch_order(t, order)
                elif s.tag in self.tags.watched and self.values.get(s.tag, ATTENTION) != s.value:
                    self.values[s.tag] = s.value
                    if s.tag == self.spec.mode_tag and self.state_tag in self.values:
                        self._state(self.values.get(self.state_tag), t, mode_changed=True)
                    self.downtime.reason_changed(t)
        self.time.settle()

    def link(self, link: Link) -> None:
        t = self.time.of(link.ts)
        if link.up:
            if not self.link_up:
                self._link_up(t)
        elif self.link_up or self.gap.start is None:
            self.link_up = False
            error = link.error
            self._go_unknown(t, f"link down: {error}" if error else "link down", GAP)
        self.time.settle()

    # -- as time passes: MachineTime calls these at their instants -----------------------------

    def _start(self, t: float) -> None:
        self.shift.segment = self.shift.at(t)
        self.interval.start = t
        self.interval.closes = self.interval.grid_after(t)
        shift = self.shift.shift
        if shift is not None:
            self.drafts.shift(shift.start, shift, self.order_id)
        self.state.bucket = None
        self.state.apply(t)

    def _restart(self, t: float) -> None:
        self.link_up = False
        self._go_unknown(t, "gateway restart", RESTART)

    def _no_parts(self, e: float) -> None:
        self.own.no_parts(self.link_up, self.time.now)

    def _grid(self, e: float, t: float) -> None:
        interval = self.interval
        if self.debounce.candidate is not None:
            # Held until the candidate state is decided: its start may cut this interval.
            interval.closes = e + interval.length_s
            return
        if self.gap.end is not None:
            self.gap.report()
        if interval.parts or self.state.bucket not in QUIET:
            self.state.close(e)
            interval.start = e
            interval.closes = e + interval.length_s
            return
        interval.skip(e, min(t, self.shift.segment.end, self.debounce.due, self.watch.due))

    def _calendar(self, e: float) -> None:
        old = self.shift.shift
        seg = self.shift.at(e)
        if (old and old.shift_id) != (seg.shift and seg.shift.shift_id):

            def change() -> None:
                # What closes at the boundary belongs to the shift that ends there.
                self.shift.segment = seg
                if seg.shift is not None:
                    self.drafts.shift(seg.shift.start, seg.shift, self.order_id)

            self._boundary(e, change)
        else:
            self.shift.segment = seg
            self.state.apply(e)
        self.own.rearm(e, self.link_up)

    def _confirm(self, e: float) -> None:
        self.state.confirmed(self.debounce.confirm())
        self.own.rearm(e, self.link_up)

    # -- tags ------------------------------------------------------------------------------------

    def _state(self, value: Any, t: float, mode_changed: bool = False) -> None:
        tag = self.tag
        if not mode_changed:
            self.values[self.state_tag or ""] = value
            raw = tag.raw
            if value == raw and type(value) is type(raw):
                return  # what the tag showed (1 and True are not the same)
            tag.raw = value
        self.own.state_tag(value, self.tags.mode, t, self.link_up, self.time.now)
        self.downtime.reason_changed(t)

    def _counter(self, c: Counter, s: Sample, t: float) -> None:
        value = as_count(s.value, c.modulus) if s.quality == "good" else None
        if value is None:
            c.unreadable()
            return
        if not self.link_up:
            self._link_up(t)
        if self.watch.first is None:
            self.own.first_count(t, self.link_up, self.time.now)
        if c.raw is None:
            c.start(value, t)
            if c.gap:
                c.gap = False
                self.gap.counter_back(self.time.now)
            c.settle()
            return
        delta, quality, held = c.read(value, t, self.tags.max_rate)
        if held is not None:
            self._stats["held count"] += 1
            self.drafts.held(t, c, held, self.order_id, self.shift_id)
        if c.gap:
            landed = self.gap.absorb(c, delta, quality, self.time.now)
            if landed is None:
                return
            quality = landed
        c.settle()
        if delta == 0:
            if quality > OK:  # a reset to zero, say: the record it falls in carries the flag
                self.debounce.parts_at(t).flag(quality)
            return
        orders = self.orders
        if orders.changeover and orders.ends_changeover(c.role, delta):
            orders.changeover = False
            self.state.apply(t)
        self.own.part(t, self.link_up, self.time.now)
        self.debounce.parts_at(t).add(c.role, delta, quality)

    # -- link and restart -----------------------------------------------------------------------

    def _link_up(self, t: float) -> None:
        self.link_up = True
        self.gap.back(t)
        if not self.interval.parts and self.interval.start < t:
            self.interval.start = t
        self.own.rearm(t, self.link_up)

    def _go_unknown(self, t: float, reason: str, kind: int) -> None:
        self.values.clear()
        self.own.forget(reason)
        self.state.lost(t)
        self.gap.begin(t, kind, (t, self.order_id, self.shift_id, self.ideal_cycle_time()))

    # -- boundaries: order and shift ------------------------------------------------------------

    def _boundary(self, t: float, change: Callable[[], None]) -> None:
        """Split everything open at t: counts, state, downtime; `change` switches order/shift."""
        if self.gap.end is not None:
            self.gap.report()
        undecided = self.debounce.candidate is not None
        if undecided:
            self.debounce.drop()
        self.state.close(t, final=True)
        carried = self.downtime.cut(t)
        change()
        self.gap.boundary((t, self.order_id, self.shift_id, self.ideal_cycle_time()))
        self.state.anew(t, carried)
        if undecided:
            # Still undecided: it continues from the boundary, in the new order or shift.
            self.own.consider(t, self.time.now)

    def start_order(self, t: float, order: ActiveOrder) -> None:
        self._switch_order(t, order)

    def stop_order(self, t: float) -> None:
        self._switch_order(t, None)

    def _switch_order(self, t: float, new: ActiveOrder | None) -> None:
        def change() -> None:
            self.orders.switch(t, new, self.shift_id)
            self.watch.cycle_time(self.ideal_cycle_time())

        self._boundary(t, change)
        self.own.rearm(t, self.link_up)
        self.time.settle()

    # -- the gateway stops ---------------------------------------------------------------------

    def stop(self, t: float) -> None:
        """The gateway stops (orderly) at t: from then on nobody watches this machine, so its
        state is unknown ("gateway stopped"), its counts are closed there, and an open
        downtime is suspended until the machine is seen again."""
        if not self.time.started or self.time.restored:
            return
        if t > self.time.now:
            self.time.advance(t)
        if self.gap.end is not None:
            self.gap.report()
        self.link_up = False
        self._go_unknown(self.time.now, "gateway stopped", RESTART)

    def flush(self) -> None:
        """Report the open count interval (and parts counted across a gap) up to now."""
        if not self.time.started or self.time.restored:
            return
        if self.gap.end is not None:
            self.gap.report()
        self.state.cut(self.time.now, final=True)
