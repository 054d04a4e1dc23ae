"""The southbound side of `mesgw run`: one connector task per machine, plus the clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import structlog

from connectors.sample import Connector, Emit, Reading
from gateway.config import MachineConfig, ModbusConnector, OpcUaConnector, Settings
from gateway.logging import get_logger
from gateway.synthetic import Emit as EmitDrafts
from gateway.synthetic import run_synthetic
from rules.inputs import Tick
from rules.spec import every_reading, machine_spec

log = get_logger("gateway.sources")

TICK_S = 1.0


def connector_for(machine: MachineConfig) -> Connector | None:
    """The connector reading this machine; None for the synthetic event source."""
    spec = machine.connector
    if isinstance(spec, ModbusConnector):
        from connectors.modbus.device import ModbusDevice

        # Report by exception: the rules are fed what changed, and what they need each poll.
        every = every_reading(machine_spec(machine))
        return ModbusDevice(machine.id, spec, machine.tags, every_poll=every)
    if isinstance(spec, OpcUaConnector):
        from connectors.opcua.device import OpcUaDevice

        return OpcUaDevice(machine.id, spec, machine.tags)
    return None


async def run_sources(settings: Settings, readings: Emit, drafts: EmitDrafts) -> None:
    """Every machine's connector in its own task, so a dead device never delays another."""
    async with asyncio.TaskGroup() as group:
        for machine in settings.machines:
            connector = connector_for(machine)
            if connector is not None:
                kind = machine.connector.type
                group.create_task(
                    _run_device(machine.id, kind, connector, readings), name=f"{kind}:{machine.id}"
                )
        group.create_task(run_synthetic(settings.machines, drafts), name="synthetic")


async def _run_device(machine: str, kind: str, connector: Connector, emit: Emit) -> None:
    structlog.contextvars.bind_contextvars(machine=machine, connector=kind)
    await connector.run(emit)


async def run_clock(
    emit: Callable[[Sequence[Reading | Tick]], Awaitable[object]],
    *,
    every_s: float = TICK_S,
    clock: Callable[[], float] = time.time,
    also: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """A tick on whole multiples of `every_s`: the rules' only notion of time passing.

    Each tick carries the instant it was due, not when a busy loop got round to it, so live
    ticks are the ones replay rebuilds from the samples' timestamps.
    """
    while True:
        now = clock()
        due = now - now % every_s + every_s
        await asyncio.sleep(due - now)
        await emit([Tick(datetime.fromtimestamp(due, UTC))])
        if also is not None:
            await also()
