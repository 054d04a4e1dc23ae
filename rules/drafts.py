"""The event drafts one machine's rules write, in the words of the event contract."""

from __future__ import annotations

from typing import Any, cast

from common.events import (
    CountData,
    CountQuality,
    Draft,
    HeldCountData,
    OrderData,
    ShiftBreak,
    ShiftData,
    StateData,
)
from rules.calendar import ShiftOccurrence, ms_stamp, utc
from rules.config import Bucket
from rules.counters import Counter
from rules.orders import ActiveOrder

StateTriple = tuple[Bucket, int | str | None, str | None]  # bucket, source code, reason


class Drafts:
    """Writes one machine's drafts to the shared `out` list, dated by machine time."""

    __slots__ = ("area", "line", "machine", "out")

    def __init__(self, area: str, line: str, machine: str, out: list[Draft]) -> None:
        self.area, self.line, self.machine = area, line, machine
        self.out = out

    def add(self, kind: Any, t: float, data: Any, order: str | None, shift: str | None) -> None:
        self.out.append(Draft(kind, utc(t), self.area, self.line, self.machine, data, order, shift))

    def state(self, t: float, state: StateTriple, order: str | None, shift: str | None) -> None:
        bucket, code, reason = state
        data = StateData.model_construct(bucket=bucket, code=code, reason=reason, since=utc(t))
        self.add("state", t, data, order, shift)

    def shift(self, t: float, shift: ShiftOccurrence, order: str | None) -> None:
        data = ShiftData.model_construct(
            shift_id=shift.shift_id,
            calendar=shift.calendar,
            name=shift.name,
            start=utc(shift.start),
            end=utc(shift.end),
            breaks=[ShiftBreak.model_construct(start=utc(s), end=utc(e)) for s, e in shift.breaks],
        )
        self.add("shift.started", t, data, order, shift.shift_id)

    def order(
        self, kind: str, t: float, order: ActiveOrder, status: str, shift: str | None
    ) -> None:
        data = OrderData.model_construct(
            order_id=order.order_id,
            product=order.product,
            quantity=order.quantity,
            ideal_cycle_time_s=order.ideal_cycle_time_s,
            status=cast(Any, status),
            origin=cast(Any, order.origin),
        )
        self.add(kind, t, data, order.order_id, shift)

    def count(
        self,
        t: float,
        start: float,
        counted: tuple[int, int, int],
        quality: CountQuality,
        ideal_cycle_time_s: float | None,
        order: str | None,
        shift: str | None,
    ) -> None:
        """The parts (good, reject, total) counted from start to t."""
        good, reject, total = counted
        data = CountData.model_construct(
            good=good,
            reject=reject,
            total=total,
            start=utc(start),
            end=utc(t),
            quality=quality,
            ideal_cycle_time_s=ideal_cycle_time_s,
        )
        self.add("count", t, data, order, shift)

    def held(
        self,
        t: float,
        counter: Counter,
        held: tuple[int, int, int, int | None, float],
        order: str | None,
        shift: str | None,
    ) -> None:
        """A counter change the rules cannot vouch for (`Counter.read`), held for a clerk."""
        old, new, claimed, allowed, since = held
        data = HeldCountData.model_construct(
            held_id=f"{self.machine}-{counter.tag}-{ms_stamp(t)}",
            counter=counter.tag,
            role=cast(Any, counter.role),
            old_raw=old,
            new_raw=new,
            claimed=claimed,
            plausible_max=allowed,
            reason=cast(Any, Counter.held_reason(new, old)),
            start=utc(since),
            end=utc(t),
        )
        self.add("count.held", t, data, order, shift)
