"""One machine's production rules over time: counts, state, downtime, its order and shift.

Time is the machine's own: the latest of its samples' timestamps and the ticks; a late
sample counts at that time. Every change that happens at a known instant — a shift or break
boundary, the end of a count interval, a debounced state becoming certain, an inferred stop
— is processed at that instant, in time order, before the reading that revealed it.

A state change of the machine itself (its state tag, or the counts stopping and resuming)
is a candidate until it has lasted `min_state_s`, then dated from its start; counts are cut
at that instant too, so each count interval lies in one state, one order and one shift.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter as Tally
from typing import Any, cast

from connectors.sample import Link, Sample
from gateway.events import (
    CountData,
    DowntimeData,
    Draft,
    HeldCountData,
    OrderData,
    ShiftBreak,
    ShiftData,
    StateData,
)
from rules.calendar import ALWAYS, Calendar, Segment, utc
from rules.config import Bucket
from rules.counters import ATTENTION, GAP, HELD, OK, QUALITIES, RESTART, Counter, as_count
from rules.downtime import Downtime, downtime_id, ms_of, ms_stamp
from rules.orders import ActiveOrder, OrderBook, order_id
from rules.reasons import Reason, Reasons
from rules.spec import MachineSpec, PlantRules
from rules.states import StateTable, code_value

INF = math.inf
# A reading stamped further ahead of the gateway's clock (the ticks) counts at the clock's
# time: a PLC with a wrong clock must not drag its machine into the future.
MAX_AHEAD_S = 300.0
_QUIET = ("unknown", "not_scheduled")  # an interval with no parts in these is not reported
# The buckets a downtime is kept for: own stops, setup, and stops caused up- or downstream.
_DOWN = ("down", "changeover", "starved", "blocked")
_EXTERNAL = ("starved", "blocked")

StateTriple = tuple[Bucket, int | str | None, str | None]


class Candidate:
    """A state the machine seems to be in, not yet for `min_state_s`; counts after `split`
    are held apart so the count interval can be cut exactly where it began."""

    __slots__ = ("bucket", "code", "g", "q", "r", "reason", "since", "split", "t")

    def __init__(self, state: StateTriple, since: float, split: float) -> None:
        self.bucket, self.code, self.reason = state
        self.since = since
        self.split = split
        self.g = self.r = self.t = 0
        self.q = 0


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
        self.id, self.area, self.line = spec.id, spec.area, spec.line
        self.out = out
        self.stats: Tally[str] = stats if stats is not None else Tally()
        self.book = book
        self.calendar = calendar
        self.interval = rules.count_interval_s
        self.min_state = rules.min_state_s
        self.micro_stop_s = (
            spec.micro_stop_s if spec.micro_stop_s is not None else rules.micro_stop_s
        )
        self.micro_loss = rules.micro_stop_loss
        self.external_loss = rules.starved_blocked_loss
        self.down_after_cycles = rules.down_after_cycles
        self.down_after_default = rules.down_after_s
        self.ict = spec.ideal_cycle_time_s
        if spec.max_rate_per_s is not None:
            self.max_rate: float | None = spec.max_rate_per_s
        elif spec.ideal_cycle_time_s is not None:
            self.max_rate = rules.rate_tolerance / spec.ideal_cycle_time_s
        else:
            self.max_rate = None

        self.counters: dict[str, Counter] = {}
        self.roles: dict[str, str] = {}
        for name, tag in spec.tags.items():
            self.roles[name] = tag.role
            if tag.role.endswith("_count"):
                self.counters[name] = Counter(name, tag.role, tag.modulus, tag.resettable)
        present = set(self.roles.values())
        self.has_g = "good_count" in present
        self.has_r = "reject_count" in present
        self.has_t = "total_count" in present
        self.state_tag = next((n for n, r in self.roles.items() if r == "state"), None)
        self.reason_tag = next((n for n, r in self.roles.items() if r == "reason"), None)
        self.table = (
            StateTable.build(spec.state_table, plant.state_tables)
            if spec.state_table is not None
            else None
        )
        if self.state_tag is not None and self.table is None:
            raise ValueError(f"machine {spec.id}: a state tag needs a state table")
        # A changeover ends at the next good part: it needs a counter that shows one.
        self.changeover_on = rules.changeover and (self.has_g or self.has_t)
        self.reasons = Reasons(
            plant.reasons, spec.reason_map, spec.reason_rules, rules.changeover_reason
        )
        # Tags whose value the rules look at besides their role: rule conditions, mode.
        self.watched = set(self.reasons.rule_tags)
        if spec.mode_tag is not None:
            self.watched.add(spec.mode_tag)

        # time
        self.started = False
        self.restored = False
        self.now = -INF
        self.deadline = -INF
        self.ts_obj: object = None
        self.ts_val = 0.0
        self.clock = INF  # the latest tick; INF until there is one
        self.seg: Segment = ALWAYS
        # count interval
        self.next_close = INF
        self.acc_start = 0.0
        self.a_g = self.a_r = self.a_t = 0
        self.a_q = 0
        self.carry_g = self.carry_r = 0
        # link gap or restart: parts counted on return, spread over the gap's stretches
        self.gap_start: float | None = None
        self.gap_end: float | None = None
        self.gap_kind = GAP
        self.gap_segs: list[tuple[float, str | None, str | None, float | None]] = []
        self.g_g = self.g_r = self.g_t = 0
        self.g_q = 0
        # state
        self.link_up = False
        self.values: dict[str, Any] = {}
        self.tag_raw: Any = ATTENTION
        self.tag_bucket: Bucket = "unknown"
        self.tag_code: int | str | None = None
        self.tag_reason: str | None = None
        self.ev_t: float | None = None  # first counter reading since the data came back
        self.last_count_t = -INF
        self.infer_from = -INF
        self.inferred_down = False
        self.down_t = INF
        self.mb: Bucket = "unknown"  # the machine's own confirmed bucket
        self.mb_code: int | str | None = None
        self.mb_reason: str | None = "no data yet"
        self.cand: Candidate | None = None
        self.cand_t = INF
        self.changeover = False
        self.co_g = self.co_r = self.co_t = 0
        self.eb: Bucket | None = None  # the published bucket (calendar and changeover applied)
        self.eb_since = -INF
        # downtime
        self.dt: Downtime | None = None
        self.announce_t = INF  # when the open downtime has lasted min_state_s (unannounced)
        self.chain_start: float | None = None
        self.last_dt: tuple[int, int] = (0, 0)
        # orders
        self.order: ActiveOrder | None = None
        self.last_completed: str | None = None
        self.plc_order: str | None = None
        self.down_after = self._down_after()

    # -- identity of the moment ---------------------------------------------------------------

    @property
    def shift_id(self) -> str | None:
        shift = self.seg.shift
        return None if shift is None else shift.shift_id

    @property
    def order_id(self) -> str | None:
        return None if self.order is None else self.order.order_id

    def _ict(self) -> float | None:
        order = self.order
        if order is not None and order.ideal_cycle_time_s is not None:
            return order.ideal_cycle_time_s
        return self.ict

    def _down_after(self) -> float:
        if self.spec.down_after_s is not None:
            return self.spec.down_after_s
        ict = self._ict()
        if ict is not None:
            return self.down_after_cycles * ict
        return self.down_after_default

    # -- readings -----------------------------------------------------------------------------

    def time_of(self, ts: Any) -> float:
        """The machine time of a reading: its timestamp, never before what was processed."""
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

    def sample(self, s: Sample) -> None:
        t = self.time_of(s.ts)
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
                    self._state_unreadable(s, t)
            else:
                if not self.link_up:
                    self._link_up(t)
                if role == "state":
                    self._state(s.value, t)
                elif role == "reason":
                    if self.values.get(s.tag, ATTENTION) != s.value:
                        self.values[s.tag] = s.value
                        self._update_reason(t)
                elif role == "order":
                    self._plc_order(s.value, t)
                elif s.tag in self.watched and self.values.get(s.tag, ATTENTION) != s.value:
                    self.values[s.tag] = s.value
                    if s.tag == self.spec.mode_tag and self.state_tag in self.values:
                        self._state(self.values.get(self.state_tag), t, mode_changed=True)
                    self._update_reason(t)
        self._settle()

    def link(self, link: Link) -> None:
        t = self.time_of(link.ts)
        if link.up:
            if not self.link_up:
                self._link_up(t)
        elif self.link_up or self.gap_start is None:
            self._link_down(t, link.error)
        self._settle()

    def _settle(self) -> None:
        self.deadline = min(
            self.next_close, self.seg.end, self.cand_t, self.down_t, self.announce_t
        )
        if self.deadline <= self.now:
            self.advance(self.now)

    # -- the passing of time -----------------------------------------------------------------

    def advance(self, t: float) -> None:
        """Process everything due up to and including t, in time order."""
        if not self.started:
            self._start(t)
        if self.restored:
            self.restored = False
            self._after_restart()
        while True:
            e = self.next_close
            kind = 0
            if self.seg.end <= e:
                e = self.seg.end
                kind = 1
            if self.cand_t < e:
                e = self.cand_t
                kind = 2
            if self.down_t < e:
                e = self.down_t
                kind = 3
            if self.announce_t < e:
                e = self.announce_t
                kind = 4
            if e > t:
                break
            if e > self.now:
                self.now = e
            if kind == 0:
                self._grid(e, t)
            elif kind == 1:
                self._calendar(e)
            elif kind == 2:
                self._confirm(e)
            elif kind == 3:
                self._down_timer(e)
            else:
                self._announce(e)
        if t > self.now:
            self.now = t
        self.deadline = min(
            self.next_close, self.seg.end, self.cand_t, self.down_t, self.announce_t
        )

    def _start(self, t: float) -> None:
        self.started = True
        self.now = t
        self.seg = self._segment(t)
        self.acc_start = t
        self.next_close = self._grid_after(t)
        shift = self.seg.shift
        if shift is not None:
            self._emit_shift(shift.start)
        self.eb = None
        self._apply_effective(t)

    def _segment(self, t: float) -> Segment:
        return ALWAYS if self.calendar is None else self.calendar.segment_at(t)

    def _grid_after(self, t: float) -> float:
        if not self.counters:
            return INF  # a machine without counters has no count intervals
        return (math.floor(t / self.interval) + 1) * self.interval

    def _grid(self, e: float, t: float) -> None:
        if self.cand is not None:
            # Held until the candidate state is decided: its start may cut this interval.
            self.next_close = e + self.interval
            return
        if self.gap_end is not None:
            self._emit_gap()
        if self.a_t or self.a_g or self.a_r or self.eb not in _QUIET:
            self._close_interval(e)
            self.acc_start = e
            self.next_close = e + self.interval
            return
        # Nothing to report while unknown or off shift: jump to the last grid point before
        # the next thing that can happen, so a long gap costs no loop per interval.
        limit = min(t, self.seg.end, self.cand_t, self.down_t)
        last = max(e, math.floor(limit / self.interval) * self.interval)
        self.acc_start = last
        self.next_close = last + self.interval

    def _calendar(self, e: float) -> None:
        old = self.seg.shift
        seg = self._segment(e)
        if (old and old.shift_id) != (seg.shift and seg.shift.shift_id):

            def change() -> None:
                # What closes at the boundary belongs to the shift that ends there.
                self.seg = seg
                if seg.shift is not None:
                    self._emit_shift(seg.shift.start)

            self._boundary(e, change)
        else:
            self.seg = seg
            self._apply_effective(e)
        self._rearm(e)

    # -- the machine's own state ----------------------------------------------------------------

    def _raw(self) -> StateTriple:
        """What the readings say the machine is doing, before debounce."""
        if self.state_tag is not None:
            if self.tag_bucket == "running" and self.inferred_down:
                return "down", self.tag_code, f"no count for {self.down_after:g} s"
            return self.tag_bucket, self.tag_code, self.tag_reason
        if not self.counters or self.ev_t is None:
            return "unknown", None, self.mb_reason if self.mb == "unknown" else "no data yet"
        if self.inferred_down:
            return "down", None, f"no count for {self.down_after:g} s"
        if self.last_count_t >= self.ev_t:
            return "running", None, None
        return "unknown", None, "waiting for counts"

    def _reconsider(self, since: float) -> None:
        state = self._raw()
        cand = self.cand
        if state[0] == self.mb:
            if cand is not None:
                self._merge_candidate()
            return
        if cand is not None:
            if cand.bucket == state[0]:
                return
            self._merge_candidate()
        since = max(since, self.eb_since)
        self.cand = Candidate(state, since, max(since, self.acc_start))
        self.cand_t = max(since + self.min_state, self.now)

    def _merge_candidate(self) -> None:
        cand = self.cand
        assert cand is not None
        self.a_g += cand.g
        self.a_r += cand.r
        self.a_t += cand.t
        self.a_q = max(self.a_q, cand.q)
        self.cand = None
        self.cand_t = INF

    def _confirm(self, e: float) -> None:
        cand = self.cand
        assert cand is not None
        self.cand = None
        self.cand_t = INF
        self.mb, self.mb_code, self.mb_reason = cand.bucket, cand.code, cand.reason
        state = self._effective()
        if state[0] != self.eb:
            self._close_interval(cand.split)
            self.a_g += cand.g
            self.a_r += cand.r
            self.a_t += cand.t
            self.a_q = max(self.a_q, cand.q)
            # Something else may have been published since it began (a break, say).
            self._set_state(max(cand.since, self.eb_since), state)
        else:
            self.a_g += cand.g
            self.a_r += cand.r
            self.a_t += cand.t
            self.a_q = max(self.a_q, cand.q)
        self._rearm(e)

    def _effective(self) -> StateTriple:
        """The published state: the calendar overrides the machine, changeover its stops."""
        kind = self.seg.kind
        if kind == "off":
            return "not_scheduled", None, "outside shifts"
        if kind == "break":
            return "planned_stop", None, "break"
        if self.mb == "unknown":
            return "unknown", self.mb_code, self.mb_reason
        if self.changeover:
            return "changeover", None, "changeover"
        return self.mb, self.mb_code, self.mb_reason

    def _apply_effective(self, t: float) -> None:
        state = self._effective()
        if state[0] != self.eb:
            self._set_state(t, state)

    def _set_state(self, t: float, state: StateTriple) -> None:
        bucket = state[0]
        was = self.eb
        self._cut(t)
        self.eb = bucket
        self.eb_since = t
        self._emit_state(t, state)
        self._downtime_follows(t, bucket, from_unknown=was == "unknown")

    # -- inferred stops ------------------------------------------------------------------------

    def _infer_active(self) -> bool:
        return (
            bool(self.counters)
            and self.link_up
            and self.ev_t is not None
            and not self.inferred_down
            and not self.changeover
            and self.seg.kind == "on"
            and (self.state_tag is None or self.tag_bucket == "running")
        )

    def _rearm(self, t: float) -> None:
        if self._infer_active():
            if self.down_t == INF:
                self.infer_from = t
            self.down_t = max(self.last_count_t, self.infer_from) + self.down_after
        else:
            self.down_t = INF

    def _down_timer(self, e: float) -> None:
        self.down_t = INF
        if not self._infer_active():
            return
        self.inferred_down = True
        self._reconsider(max(self.last_count_t, self.infer_from))

    # -- tags ------------------------------------------------------------------------------------

    def _state(self, value: Any, t: float, mode_changed: bool = False) -> None:
        if not mode_changed:
            self.values[self.state_tag or ""] = value
            if value == self.tag_raw and type(value) is type(self.tag_raw):
                return
            self.tag_raw = value
        assert self.table is not None
        mode = self.values.get(self.spec.mode_tag) if self.spec.mode_tag else None
        bucket = self.table.bucket(value, mode)
        code = code_value(value)
        if mode is not None and self.spec.mode_tag is not None:
            code = f"{code}:{code_value(mode)}"
        self.tag_code = code
        if bucket != self.tag_bucket:
            self.tag_bucket = bucket
            self.tag_reason = None
            if bucket == "unknown":
                listed = self.table.names(value, mode)
                self.tag_reason = f"state code {code} " + (
                    "means unknown" if listed else "not in the state table"
                )
            self.inferred_down = False
            self._rearm(t)
            self._reconsider(t)
        self._update_reason(t)

    def _state_unreadable(self, s: Sample, t: float) -> None:
        if self.tag_bucket == "unknown" and self.tag_raw is ATTENTION:
            return
        self.tag_raw = ATTENTION
        self.tag_bucket = "unknown"
        self.tag_code = None
        self.tag_reason = f"state tag unreadable: {s.status or s.quality}"
        self._rearm(t)
        self._reconsider(t)

    def _counter(self, c: Counter, s: Sample, t: float) -> None:
        if s.quality != "good":
            c.stale = c.raw is not None
            c.settle()
            return
        value = as_count(s.value, c.modulus)
        if value is None:
            c.stale = c.raw is not None
            c.settle()
            return
        if not self.link_up:
            self._link_up(t)
        if self.ev_t is None:
            self.ev_t = t
            self._rearm(t)
            self._reconsider(t)
        if c.raw is None:
            c.start(value, t)
            if c.gap:
                c.gap = False
                self._gap_counter_done()
            c.settle()
            return
        old = c.raw
        old_ts = c.ts
        delta, quality, allowed = c.classify(value, t, self.max_rate)
        if quality == HELD:
            self._hold(c, old, value, delta, allowed, old_ts, t)
            delta, quality = 0, OK
        c.accept(value, t, delta)
        if c.stale:
            quality = max(quality, GAP)
            c.stale = False
        if c.gap:
            c.gap = False
            c.settle()
            if self.gap_start is not None:
                self._add_gap(c.role, delta, quality)
                self._gap_counter_done()
                return
            quality = max(quality, GAP)
        c.settle()
        if delta == 0:
            if quality > OK:  # a reset to zero, say: the record it falls in carries the flag
                cand = self.cand
                if cand is not None and t >= cand.split:
                    cand.q = max(cand.q, quality)
                else:
                    self.a_q = max(self.a_q, quality)
            return
        if self.changeover and self._ends_changeover(c.role, delta):
            self.changeover = False
            self._apply_effective(t)
        self.last_count_t = t
        if self.inferred_down:
            self.inferred_down = False
            self._reconsider(t)
        elif self.mb == "unknown" and self.state_tag is None:
            self._reconsider(self.ev_t if self.ev_t is not None else t)
        self._rearm(t)
        cand = self.cand
        role = c.role
        if cand is not None and t >= cand.split:
            cand.g, cand.r, cand.t = _plus(role, delta, cand.g, cand.r, cand.t)
            cand.q = max(cand.q, quality)
        else:
            self.a_g, self.a_r, self.a_t = _plus(role, delta, self.a_g, self.a_r, self.a_t)
            self.a_q = max(self.a_q, quality)

    def _hold(
        self,
        c: Counter,
        old: int,
        value: int,
        claimed: int,
        allowed: int | None,
        since: float,
        t: float,
    ) -> None:
        """A change the rules cannot vouch for: published and stored apart, never counted."""
        self.stats["held count"] += 1
        data = HeldCountData.model_construct(
            held_id=f"{self.id}-{c.tag}-{ms_stamp(t)}",
            counter=c.tag,
            role=cast(Any, c.role),
            old_raw=old,
            new_raw=value,
            claimed=claimed,
            plausible_max=allowed,
            reason=cast(Any, Counter.held_reason(value, old)),
            start=utc(since),
            end=utc(t),
        )
        self._draft("count.held", t, data, self.order_id, self.shift_id)

    def _ends_changeover(self, role: str, delta: int) -> bool:
        self.co_g, self.co_r, self.co_t = _plus(role, delta, self.co_g, self.co_r, self.co_t)
        if self.has_g:
            return self.co_g > 0
        if self.has_t:
            return self.co_t - self.co_r > 0
        return False

    # -- link and restart -----------------------------------------------------------------------

    def _link_up(self, t: float) -> None:
        self.link_up = True
        if self.gap_start is not None and self.gap_end is None:
            self.gap_end = t
        if not (self.a_g or self.a_r or self.a_t) and self.acc_start < t:
            self.acc_start = t
        self._rearm(t)

    def _link_down(self, t: float, error: str | None) -> None:
        self.link_up = False
        self._go_unknown(t, f"link down: {error}" if error else "link down", GAP)

    def _go_unknown(self, t: float, reason: str, kind: int) -> None:
        if self.cand is not None:
            self._merge_candidate()
        self.tag_raw = ATTENTION
        self.tag_bucket = "unknown"
        self.tag_code = None
        self.tag_reason = reason
        self.values.clear()
        self.ev_t = None
        self.last_count_t = -INF
        self.inferred_down = False
        self.down_t = INF
        self.mb, self.mb_code, self.mb_reason = "unknown", None, reason
        state = self._effective()
        if state[0] != self.eb:
            self._set_state(t, state)
        else:
            self._close_interval(t)
        self._begin_gap(t, kind)

    def _after_restart(self) -> None:
        t = self.now
        self.link_up = False
        self._go_unknown(t, "gateway restart", RESTART)

    def _begin_gap(self, t: float, kind: int) -> None:
        if self.gap_start is None:
            self.gap_start = t
            self.gap_kind = kind
            self.gap_segs = [(t, self.order_id, self.shift_id, self._ict())]
            self.g_g = self.g_r = self.g_t = 0
            self.g_q = 0
        self.gap_end = None
        for c in self.counters.values():
            if c.raw is not None:
                c.gap = True
            c.settle()

    def _add_gap(self, role: str, delta: int, quality: int) -> None:
        self.g_g, self.g_r, self.g_t = _plus(role, delta, self.g_g, self.g_r, self.g_t)
        self.g_q = max(self.g_q, quality)

    def _gap_counter_done(self) -> None:
        if self.gap_start is not None and not any(c.gap for c in self.counters.values()):
            if self.gap_end is None:
                self.gap_end = self.now
            self._emit_gap()

    def _emit_gap(self) -> None:
        """The parts counted across a gap, spread over its stretches (order, shift) by time."""
        start, end = self.gap_start, self.gap_end
        assert start is not None and end is not None
        good, reject, total = self._derive(self.g_g, self.g_r, self.g_t)
        quality = QUALITIES[max(self.gap_kind, self.g_q)]
        segs = self.gap_segs
        self.gap_start = self.gap_end = None
        self.gap_segs = []
        self.g_g = self.g_r = self.g_t = self.g_q = 0
        for c in self.counters.values():
            if c.gap:  # never reported back: its next delta is flagged where it lands
                c.gap = False
                c.stale = True
                c.settle()
        if not total:
            return
        bounds = [max(s[0], start) for s in segs] + [end]
        weights = [max(0.0, b - a) for a, b in itertools.pairwise(bounds)]
        if not any(weights):
            weights = [0.0] * (len(segs) - 1) + [1.0]
        goods = _spread(good, weights)
        rejects = _spread(reject, weights)
        for i, (_, order, shift, ict) in enumerate(segs):
            g, r = goods[i], rejects[i]
            if not (g or r):
                continue
            data = CountData.model_construct(
                good=g,
                reject=r,
                total=g + r,
                start=utc(bounds[i]),
                end=utc(max(bounds[i], bounds[i + 1])),
                quality=quality,
                ideal_cycle_time_s=ict,
            )
            self._draft("count", max(bounds[i], bounds[i + 1]), data, order, shift)

    # -- counts -------------------------------------------------------------------------------

    def _derive(self, g: int, r: int, t: int) -> tuple[int, int, int]:
        """good, reject, total from the counters there are (any two give the third).

        Counters are read at slightly different moments: where one interval's good would
        exceed its total, the excess is carried into the next interval, so sums stay exact.
        """
        if self.has_g and self.has_r:
            return g, r, g + r
        if self.has_t and self.has_g:
            g += self.carry_g
            if g > t:
                self.carry_g = g - t
                return t, 0, t
            self.carry_g = 0
            return g, t - g, t
        if self.has_t and self.has_r:
            r += self.carry_r
            if r > t:
                self.carry_r = r - t
                return 0, t, t
            self.carry_r = 0
            return t - r, r, t
        if self.has_t:
            return t, 0, t
        if self.has_g:
            return g, 0, g
        return 0, r, r

    def _cut(self, t: float) -> None:
        """Close the count interval at t; counts a pending candidate holds from before t go
        with it, and the candidate holds on from t."""
        cand = self.cand
        if cand is not None and t > cand.split:
            self.a_g += cand.g
            self.a_r += cand.r
            self.a_t += cand.t
            self.a_q = max(self.a_q, cand.q)
            cand.g = cand.r = cand.t = cand.q = 0
            cand.split = t
        self._close_interval(t)

    def _close_interval(self, t: float) -> None:
        """Close the open count interval at t (a no-op unless t is after its start)."""
        start = self.acc_start
        if t <= start:
            return
        self.acc_start = t
        if not self.counters:
            return
        good, reject, total = self._derive(self.a_g, self.a_r, self.a_t)
        quality = self.a_q
        self.a_g = self.a_r = self.a_t = self.a_q = 0
        if not (good or reject) and self.eb in _QUIET:
            return
        data = CountData.model_construct(
            good=good,
            reject=reject,
            total=total,
            start=utc(start),
            end=utc(t),
            quality=QUALITIES[quality],
            ideal_cycle_time_s=self._ict(),
        )
        self._draft("count", t, data, self.order_id, self.shift_id)

    # -- boundaries: order and shift ------------------------------------------------------------

    def _boundary(self, t: float, change: Any) -> None:
        """Split everything open at t: counts, state, downtime; `change` switches order/shift."""
        if self.gap_end is not None:
            self._emit_gap()
        cand = self.cand
        if cand is not None:
            self._merge_candidate()
        self._close_interval(t)
        carried = self.dt
        if carried is not None:
            if carried.suspended is not None:
                self._end_downtime(carried.suspended, natural=False)
                carried = None
            else:
                self._end_downtime(t, natural=False)
        change()
        if self.gap_start is not None and self.gap_end is None:
            self.gap_segs.append((t, self.order_id, self.shift_id, self._ict()))
        state = self._effective()
        self.eb = state[0]
        self.eb_since = t
        self._emit_state(t, state)
        bucket = state[0]
        if bucket in _DOWN:
            same = carried is not None and carried.kind == bucket
            self._start_downtime(t, bucket, carried.reason if same and carried else None)
        elif bucket == "idle" and carried is not None:
            self._start_downtime(t, carried.kind, carried.reason)
        elif bucket == "running":
            self.chain_start = None
        if cand is not None:
            # Still undecided: it continues from the boundary, in the new order or shift.
            self._reconsider(t)

    def start_order(self, t: float, order: ActiveOrder) -> None:
        self._switch_order(t, order)

    def stop_order(self, t: float) -> None:
        self._switch_order(t, None)

    def _switch_order(self, t: float, new: ActiveOrder | None) -> None:
        old = self.order

        def change() -> None:
            if old is not None:
                self._emit_order("order.ended", t, old, "completed")
                self.book.completed(self.id, old.order_id)
                self.last_completed = old.order_id
                if self.changeover_on:
                    self.changeover = True
                    self.co_g = self.co_r = self.co_t = 0
            self.order = new
            if new is not None:
                self.book.started(self.id, new.order_id)
                self._emit_order("order.started", t, new, "running")
            self.down_after = self._down_after()

        self._boundary(t, change)
        self._rearm(t)
        self._settle()

    def _plc_order(self, value: Any, t: float) -> None:
        oid = order_id(value)
        if oid == self.plc_order:
            return
        previous, self.plc_order = self.plc_order, oid
        running = self.order_id
        if oid is None:
            if running is not None and running == previous:
                self._switch_order(t, None)
        elif oid != running:
            order = ActiveOrder(order_id=oid, origin="plc", started=t)
            self._switch_order(t, self.book.with_master_data(order))

    # -- downtime ------------------------------------------------------------------------------

    def _downtime_follows(self, t: float, bucket: str, from_unknown: bool = False) -> None:
        """Open, continue, suspend or end the downtime as the published bucket changes.

        A downtime partly out of sight (a link gap, the gateway away), or first seen when
        the machine came back into sight, lasted longer than anyone saw: never a micro-stop.
        """
        dt = self.dt
        if dt is not None:
            if dt.suspended is not None:
                if bucket == "unknown":
                    return
                if (
                    bucket == dt.kind or (bucket == "idle" and dt.kind == "down")
                ) and self._same_cause(dt):
                    dt.suspended = None
                    return
                # It ended while out of sight; the last moment it was seen is its end. How
                # long it really lasted nobody saw: never a micro-stop.
                self._end_downtime(dt.suspended, natural=False)
                if bucket == "running":
                    self.chain_start = None
            elif bucket == "unknown":
                dt.suspended = t
                dt.unseen = True
                return
            elif bucket == dt.kind or (bucket == "idle" and dt.kind == "down"):
                return
            else:
                self._end_downtime(t, natural=bucket == "running")
        if bucket == "running":
            self.chain_start = None
        elif bucket in _DOWN:
            self._start_downtime(t, bucket, None)
            if from_unknown and self.dt is not None:
                self.dt.unseen = True

    def _same_cause(self, dt: Downtime) -> bool:
        """Whether a downtime seen again after an outage is still the same stop: it is,
        unless the PLC now names another reason than the one it had."""
        if dt.reason is None or dt.reason.source != "plc":
            return True
        found = self._resolve(dt.kind == "changeover")
        return found is None or found.source != "plc" or found.code == dt.reason.code

    def _start_downtime(self, t: float, kind: str, reason: Reason | None) -> None:
        if self.chain_start is None:
            self.chain_start = t
        if reason is None:
            reason = self._resolve(kind == "changeover")
        ident, self.last_dt = downtime_id(self.id, t, self.last_dt)
        dt = Downtime(ident, kind, t, self.order_id, self.shift_id, reason)
        self.dt = dt
        if self.min_state > 0 and self.now < t + self.min_state:
            dt.announced = False  # news once it has lasted min_state_s (see _announce)
            self.announce_t = t + self.min_state
        else:
            self._emit_downtime("downtime.started", t, dt)

    def _announce(self, e: float) -> None:
        self.announce_t = INF
        dt = self.dt
        if dt is not None and not dt.announced:
            dt.announced = True
            self._emit_downtime("downtime.started", dt.start, dt)

    def _end_downtime(self, end: float, natural: bool) -> None:
        dt = self.dt
        assert dt is not None
        self.dt = None
        end = max(end, dt.start)
        if not dt.announced:
            self.announce_t = INF
            if end - dt.start < self.min_state or end <= dt.start:
                # Shorter than min_state_s: never a downtime. Its id is free again.
                ms, n = self.last_dt
                if ms == ms_of(dt.start) and n > 0:
                    self.last_dt = (ms, n - 1)
                if natural:
                    self.chain_start = None
                return
            dt.announced = True
            self._emit_downtime("downtime.started", dt.start, dt)
        micro = False
        if natural:
            began = self.chain_start if self.chain_start is not None else dt.start
            # A changeover is setup however short: availability, never a micro-stop; nor is
            # a stop caused up- or downstream.
            micro = dt.kind == "down" and not dt.unseen and end - began < self.micro_stop_s
            self.chain_start = None
        self._emit_downtime("downtime.ended", end, dt, end=end, micro=micro)

    def _resolve(self, changeover: bool) -> Reason | None:
        plc = self.values.get(self.reason_tag) if self.reason_tag is not None else None
        state = self.values.get(self.state_tag) if self.state_tag is not None else None
        return self.reasons.resolve(plc, state, self.values, changeover)

    def _update_reason(self, t: float) -> None:
        dt = self.dt
        if dt is None or dt.suspended is not None:
            return
        found = self._resolve(dt.kind == "changeover")
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
            self._emit_downtime("downtime.updated", t, dt)

    def stop(self, t: float) -> None:
        """The gateway stops (orderly) at t: from then on nobody watches this machine, so its
        state is unknown ("gateway stopped"), its counts are closed there, and an open
        downtime is suspended until the machine is seen again."""
        if not self.started or self.restored:
            return
        if t > self.now:
            self.advance(t)
        if self.gap_end is not None:
            self._emit_gap()
        self.link_up = False
        self._go_unknown(self.now, "gateway stopped", RESTART)

    def flush(self) -> None:
        """Report the open count interval (and parts counted across a gap) up to now."""
        if not self.started or self.restored:
            return
        if self.gap_end is not None:
            self._emit_gap()
        self._cut(self.now)

    # -- saved state -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to go on after a restart without counting a part twice or never."""
        cand = self.cand
        held = (cand.g, cand.r, cand.t, cand.q) if cand is not None else (0, 0, 0, 0)
        return {
            "now": _finite(self.now),
            "acc_start": self.acc_start,
            "acc": [self.a_g + held[0], self.a_r + held[1], self.a_t + held[2]],
            "acc_q": max(self.a_q, held[3]),
            "carry": [self.carry_g, self.carry_r],
            "counters": {name: c.to_json() for name, c in self.counters.items()},
            "gap": None
            if self.gap_start is None
            else {
                "start": self.gap_start,
                "end": self.gap_end,
                "kind": self.gap_kind,
                "segs": [list(seg) for seg in self.gap_segs],
                "acc": [self.g_g, self.g_r, self.g_t, self.g_q],
            },
            "eb": self.eb,
            "eb_since": _finite(self.eb_since),
            "changeover": self.changeover,
            "co": [self.co_g, self.co_r, self.co_t],
            "downtime": None if self.dt is None else self.dt.to_json(),
            "chain_start": self.chain_start,
            "last_dt": list(self.last_dt),
            "order": None if self.order is None else self.order.to_json(),
            "last_completed": self.last_completed,
            "plc_order": self.plc_order,
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take up a snapshot; the time since it was taken becomes a gap (`restart`)."""
        now = data.get("now")
        if now is None:
            return  # saved before this machine saw anything: start afresh
        self.started = True
        self.restored = True
        self.now = float(now)
        self.deadline = -INF
        self.seg = self._segment(self.now)
        self.acc_start = float(data["acc_start"])
        self.a_g, self.a_r, self.a_t = (int(x) for x in data["acc"])
        self.a_q = int(data["acc_q"])
        self.carry_g, self.carry_r = (int(x) for x in data["carry"])
        for name, saved in data.get("counters", {}).items():
            counter = self.counters.get(name)
            if counter is not None:
                counter.load(saved)
        gap = data.get("gap")
        if gap is not None:
            self.gap_start = float(gap["start"])
            self.gap_end = None if gap["end"] is None else float(gap["end"])
            self.gap_kind = int(gap["kind"])
            self.gap_segs = [(float(t), o, s, i) for t, o, s, i in gap["segs"]]
            self.g_g, self.g_r, self.g_t, self.g_q = (int(x) for x in gap["acc"])
        self.eb = data.get("eb")
        since = data.get("eb_since")
        self.eb_since = -INF if since is None else float(since)
        self.changeover = bool(data.get("changeover", False))
        self.co_g, self.co_r, self.co_t = (int(x) for x in data.get("co", (0, 0, 0)))
        saved_dt = data.get("downtime")
        self.dt = None if saved_dt is None else Downtime.from_json(saved_dt)
        self.announce_t = INF
        if self.dt is not None and not self.dt.announced:
            self.announce_t = self.dt.start + self.min_state
        chain = data.get("chain_start")
        self.chain_start = None if chain is None else float(chain)
        ms, n = data.get("last_dt", (0, 0))
        self.last_dt = (int(ms), int(n))
        saved_order = data.get("order")
        self.order = None if saved_order is None else ActiveOrder.from_json(saved_order)
        if self.order is not None:
            self.book.started(self.id, self.order.order_id)
        self.last_completed = data.get("last_completed")
        self.plc_order = data.get("plc_order")
        self.down_after = self._down_after()
        self.next_close = self._grid_after(self.now)
        self.link_up = False

    # -- drafts ----------------------------------------------------------------------------------

    def _draft(self, kind: Any, t: float, data: Any, order: str | None, shift: str | None) -> None:
        self.out.append(Draft(kind, utc(t), self.area, self.line, self.id, data, order, shift))

    def _emit_state(self, t: float, state: StateTriple) -> None:
        bucket, code, reason = state
        data = StateData.model_construct(bucket=bucket, code=code, reason=reason, since=utc(t))
        self._draft("state", t, data, self.order_id, self.shift_id)

    def _emit_shift(self, t: float) -> None:
        shift = self.seg.shift
        assert shift is not None
        data = ShiftData.model_construct(
            shift_id=shift.shift_id,
            calendar=shift.calendar,
            name=shift.name,
            start=utc(shift.start),
            end=utc(shift.end),
            breaks=[ShiftBreak.model_construct(start=utc(s), end=utc(e)) for s, e in shift.breaks],
        )
        self._draft("shift.started", t, data, self.order_id, shift.shift_id)

    def _emit_order(self, kind: str, t: float, order: ActiveOrder, status: str) -> None:
        data = OrderData.model_construct(
            order_id=order.order_id,
            product=order.product,
            quantity=order.quantity,
            ideal_cycle_time_s=order.ideal_cycle_time_s,
            status=cast(Any, status),
            origin=cast(Any, order.origin),
        )
        self._draft(kind, t, data, order.order_id, self.shift_id)

    def _emit_downtime(
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
        if dt.kind in _EXTERNAL and loss != "planned":
            loss = self.external_loss
        if dt.kind == "changeover" or dt.kind in _EXTERNAL:
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
        self._draft(kind, t, data, dt.order, dt.shift)


def _plus(role: str, delta: int, g: int, r: int, t: int) -> tuple[int, int, int]:
    """(good, reject, total) with `delta` added to the one the counter's role names."""
    if role == "good_count":
        return g + delta, r, t
    if role == "reject_count":
        return g, r + delta, t
    return g, r, t + delta


def _finite(t: float) -> float | None:
    return t if math.isfinite(t) else None


def _spread(n: int, weights: list[float]) -> list[int]:
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
