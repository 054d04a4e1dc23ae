"""Work orders as the rules keep them: the active order per machine, and planned master data.

Lifecycle here: planned (from a schedule) → running → completed; `confirmed` is the clerk's,
in the store. Master data of a planned order (product, quantity, ideal cycle time) is filled
in when the order starts, from any source, unless the start names its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from rules.inputs import PlannedOrder

MAX_ORDER_ID = 128
MAX_PLANNED = 10_000


class PlanRejected(ValueError):
    """A schedule refused as a whole (nothing of it was planned); lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ActiveOrder:
    order_id: str
    origin: str
    started: float
    product: str | None = None
    quantity: int | None = None
    ideal_cycle_time_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "origin": self.origin,
            "started": self.started,
            "product": self.product,
            "quantity": self.quantity,
            "ideal_cycle_time_s": self.ideal_cycle_time_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActiveOrder:
        return cls(
            order_id=str(data["order_id"]),
            origin=str(data["origin"]),
            started=float(data["started"]),
            product=data.get("product"),
            quantity=data.get("quantity"),
            ideal_cycle_time_s=data.get("ideal_cycle_time_s"),
        )


def order_id(value: Any) -> str | None:
    """An order number as text (PLC numbers without '.0', strings trimmed); None if empty."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    text = str(value).strip().strip("\x00").strip()
    if not text or text == "0" or len(text) > MAX_ORDER_ID:
        return None
    return text


def master_problems(
    order_id_: str | None, quantity: int | None, ideal_cycle_time_s: float | None
) -> str | None:
    if not order_id_:
        return "order_id is required"
    if len(order_id_) > MAX_ORDER_ID:
        return f"order_id longer than {MAX_ORDER_ID} characters"
    if quantity is not None and (isinstance(quantity, bool) or quantity < 0):
        return "quantity must be a whole number ≥ 0"
    if ideal_cycle_time_s is not None and not ideal_cycle_time_s > 0:
        return "ideal_cycle_time_s must be > 0"
    return None


class OrderBook:
    """Planned master data and which machine runs which order, shared by all machines."""

    def __init__(self, machines: Sequence[str]) -> None:
        self.machines = set(machines)
        self.planned: dict[str, PlannedOrder] = {}  # master data, kept after the start
        self.status: dict[str, str] = {}  # order id → planned | running | completed
        self.running: dict[str, str] = {}  # order id → machine

    def plan(self, orders: Sequence[PlannedOrder]) -> int:
        problems = []
        seen: set[str] = set()
        for i, po in enumerate(orders, start=1):
            oid = (po.order_id or "").strip()
            problem = master_problems(oid, po.quantity, po.ideal_cycle_time_s)
            if problem is None and oid in seen:
                problem = f"order {oid} listed twice"
            if problem is None and po.machine is not None and po.machine not in self.machines:
                problem = f"unknown machine {po.machine!r}"
            if problem is None and po.machine is not None:
                where = self.running.get(oid)
                if where is not None and where != po.machine:
                    problem = f"order {oid} is running on {where}"
            if problem is not None:
                problems.append(f"order {i} ({oid or '?'}): {problem}")
            seen.add(oid)
        if problems:
            raise PlanRejected(problems)
        for po in orders:
            oid = po.order_id.strip()
            self.planned[oid] = replace(po, order_id=oid)
            if self.status.get(oid) != "running":
                self.status[oid] = "planned"
        return len(orders)

    def with_master_data(self, order: ActiveOrder) -> ActiveOrder:
        po = self.planned.get(order.order_id)
        if po is None:
            return order
        return replace(
            order,
            product=order.product if order.product is not None else po.product,
            quantity=order.quantity if order.quantity is not None else po.quantity,
            ideal_cycle_time_s=order.ideal_cycle_time_s
            if order.ideal_cycle_time_s is not None
            else po.ideal_cycle_time_s,
        )

    def started(self, machine: str, oid: str) -> None:
        self.running[oid] = machine
        self.status[oid] = "running"

    def completed(self, machine: str, oid: str) -> None:
        if self.running.get(oid) == machine:
            del self.running[oid]
        if oid in self.planned:
            self.status[oid] = "completed"
            self._bound()
        else:
            self.status.pop(oid, None)

    def _bound(self) -> None:
        # Master data of completed orders is kept for a resumed order, within a bound.
        excess = len(self.planned) - MAX_PLANNED
        if excess <= 0:
            return
        for oid in [o for o in self.planned if self.status.get(o) == "completed"][:excess]:
            del self.planned[oid]
            del self.status[oid]

    def planned_list(self) -> list[dict[str, Any]]:
        return [
            {
                "order_id": oid,
                "machine": po.machine,
                "status": "planned",
                "product": po.product,
                "quantity": po.quantity,
                "ideal_cycle_time_s": po.ideal_cycle_time_s,
                "origin": "schedule",
            }
            for oid, po in self.planned.items()
            if self.status.get(oid) == "planned"
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "planned": [
                {
                    "order_id": po.order_id,
                    "product": po.product,
                    "quantity": po.quantity,
                    "ideal_cycle_time_s": po.ideal_cycle_time_s,
                    "machine": po.machine,
                }
                for po in self.planned.values()
            ],
            "status": dict(self.status),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.planned = {}
        for item in data.get("planned", []):
            machine = item.get("machine")
            po = PlannedOrder(
                order_id=str(item["order_id"]),
                product=item.get("product"),
                quantity=item.get("quantity"),
                ideal_cycle_time_s=item.get("ideal_cycle_time_s"),
                machine=machine if machine in self.machines else None,
            )
            self.planned[po.order_id] = po
        self.status = {str(k): str(v) for k, v in data.get("status", {}).items()}
        # Which machine runs what is rebuilt from the machines' own restored state.
        self.status = {k: ("completed" if v == "running" else v) for k, v in self.status.items()}
