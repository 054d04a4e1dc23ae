"""The order tracker: a machine's active work order, and the changeover between orders."""

from __future__ import annotations

from typing import Any

from rules.drafts import Drafts
from rules.orders import ActiveOrder, OrderBook, order_id
from rules.parts import CounterRoles, Parts


class OrderTracker:
    """Owns the machine's `active` work order, the `last_completed` one, the order number the
    PLC shows (`plc_order`), and the `changeover`: from an order's end to the next order's
    first good part (`changeover_parts` counts the parts made since the end)."""

    __slots__ = (
        "active",
        "book",
        "changeover",
        "changeover_on",
        "changeover_parts",
        "drafts",
        "last_completed",
        "machine",
        "plc_order",
        "roles",
    )

    def __init__(
        self, machine: str, book: OrderBook, drafts: Drafts, roles: CounterRoles, changeover: bool
    ) -> None:
        self.machine = machine
        self.book = book
        self.drafts = drafts
        self.roles = roles
        # A changeover ends at the next good part: it needs a counter that shows one.
        self.changeover_on = changeover and (roles.good or roles.total)
        self.active: ActiveOrder | None = None
        self.last_completed: str | None = None
        self.plc_order: str | None = None
        self.changeover = False
        self.changeover_parts = Parts()

    @property
    def order_id(self) -> str | None:
        return None if self.active is None else self.active.order_id

    def ideal_cycle_time(self, machine_default: float | None) -> float | None:
        """The active order's ideal cycle time, else the machine's."""
        order = self.active
        if order is not None and order.ideal_cycle_time_s is not None:
            return order.ideal_cycle_time_s
        return machine_default

    def from_plc(self, value: Any, t: float) -> tuple[bool, ActiveOrder | None]:
        """The PLC's order tag shows `value` at t: (whether the active order changes, the
        order that runs from t)."""
        oid = order_id(value)
        if oid == self.plc_order:
            return False, None
        previous, self.plc_order = self.plc_order, oid
        running = self.order_id
        if oid is None:
            return running is not None and running == previous, None
        if oid != running:
            order = ActiveOrder(order_id=oid, origin="plc", started=t)
            return True, self.book.with_master_data(order)
        return False, None

    def switch(self, t: float, new: ActiveOrder | None, shift: str | None) -> None:
        """At t the active order ends (completed; a changeover begins) and `new` starts."""
        old = self.active
        if old is not None:
            self.drafts.order("order.ended", t, old, "completed", shift)
            self.book.completed(self.machine, old.order_id)
            self.last_completed = old.order_id
            if self.changeover_on:
                self.changeover = True
                self.changeover_parts.clear()
        self.active = new
        if new is not None:
            self.book.started(self.machine, new.order_id)
            self.drafts.order("order.started", t, new, "running", shift)

    def ends_changeover(self, role: str, delta: int) -> bool:
        """Parts counted in a changeover; whether one of them is good (it ends there)."""
        parts = self.changeover_parts
        parts.add(role, delta)
        if self.roles.good:
            return parts.good > 0
        if self.roles.total:
            return parts.total - parts.reject > 0
        return False
