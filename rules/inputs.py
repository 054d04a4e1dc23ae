"""What the rules take besides samples: the passing of time, and work-order commands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

OrderOrigin = Literal["mqtt", "http", "cli", "plc", "schedule"]


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has reached `ts` with nothing else to say: close intervals, infer stops.

    The rules never read a clock; the daemon sends a tick every second (replay derives ticks
    from the samples' own timestamps), so results depend only on the inputs.
    """

    ts: datetime


@dataclass(frozen=True, slots=True)
class GatewayMark:
    """The gateway started or stopped at `ts` (in the sample log, so that replay knows the
    time it was away as unknown, as the live rules did)."""

    kind: Literal["start", "stop"]
    ts: datetime


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """Master data of an order from the CSV schedule: filled in when the order starts."""

    order_id: str
    product: str | None = None
    quantity: int | None = None
    ideal_cycle_time_s: float | None = None
    machine: str | None = None


@dataclass(frozen=True, slots=True)
class OrderCommand:
    """Start or stop a work order on a machine, from any source.

    Idempotent: starting the order that is already running, or stopping with no order
    running when `order_id` names the last completed one, succeeds without new events.
    `order_id` on stop is optional (stop whatever runs); given, it must match.
    """

    machine: str
    action: Literal["start", "stop"]
    ts: datetime
    origin: OrderOrigin
    order_id: str | None = None
    product: str | None = None
    quantity: int | None = None
    ideal_cycle_time_s: float | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The reply to an order command: ok, or an error saying why nothing happened."""

    ok: bool
    machine: str
    order_id: str | None = None
    status: str | None = None  # the order's status after the command
    error: str | None = None
