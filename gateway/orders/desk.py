"""The order desk: what the command sources (MQTT, HTTP, CLI, CSV) hand work-order commands to.

The daemon implements it on top of the rules engine: commands run on the rules task, so
they are serialised with the samples, and the events a command causes are committed to the
outbox before its reply is sent. The sources know only this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gateway.errors import GatewayError
from rules.inputs import CommandResult, OrderCommand, PlannedOrder


class ScheduleRejected(GatewayError):
    """The desk refused a schedule as a whole (nothing of it was planned); says why."""


class OrderDesk(Protocol):
    async def submit(self, cmd: OrderCommand) -> CommandResult:
        """Apply one start/stop command; an error result (never an exception) when refused."""
        ...

    async def plan(self, orders: Sequence[PlannedOrder]) -> int:
        """Plan every order of a schedule, or none (`ScheduleRejected`); returns how many."""
        ...

    def list_orders(self) -> list[dict[str, Any]]:
        """The active order of each machine and the planned ones, as JSON-able dicts.

        Each dict has at least `order_id`, `status` and `machine` (None for a planned order
        not bound to a machine); master data (`product`, `quantity`, `ideal_cycle_time_s`)
        and times may follow.
        """
        ...
