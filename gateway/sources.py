"""The southbound side of `mesgw run`: one connector task per machine, plus the clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from connectors.sample import Connector, Emit, Reading
from gateway.config import MachineConfig, ModbusConnector, OpcUaConnector, Settings
from gateway.logging import get_logger
from gateway.synthetic import Emit as EmitDrafts
from gateway.synthetic import run_synthetic
from gateway.telemetry import SourceMetrics
from rules.inputs import Tick
from rules.spec import every_reading, machine_spec

log = get_logger("gateway.sources")

TICK_S = 1.0


def connector_for(
    machine: MachineConfig,
    observe_read: Callable[[float], None] | None = None,
    *,
    opcua_machines_per_session: int = 0,
    observe_delivery: Callable[[float], None] | None = None,
) -> Connector | None:
    """The connector reading this machine; None for the synthetic event source.

    `observe_read` receives each read's request-to-response time in seconds, and
    `observe_delivery` each OPC UA notification's source-timestamp-to-arrival time (metrics).
    """
    spec = machine.connector
    if isinstance(spec, ModbusConnector):
        from connectors.modbus.device import ModbusDevice

        # Report by exception: the rules are fed what changed, and what they need each poll.
        every = every_reading(machine_spec(machine))
        if observe_read is None:
            return ModbusDevice(machine.id, spec, machine.tags, every_poll=every)
        return ModbusDevice(
            machine.id,
            spec,
            machine.tags,
            client_factory=_timed_modbus_client(observe_read),
            every_poll=every,
        )
    if isinstance(spec, OpcUaConnector):
        from connectors.opcua.device import OpcUaDevice

        device = OpcUaDevice(
            machine.id, spec, machine.tags, machines_per_session=opcua_machines_per_session
        )
        device.observe_read = observe_read
        device.observe_delivery = observe_delivery
        return device
    return None


Trace = Callable[[bool, bytes], bytes]


def _timed_modbus_client(observe: Callable[[float], None]) -> Callable[..., Any]:
    """A Modbus client factory whose packet trace also times each request to its answer.

    Only one request is ever outstanding on a connection, so the first bytes received after
    bytes were sent are that request's answer.
    """
    from connectors.modbus.link import make_client

    def factory(connector: ModbusConnector, *, trace_packet: Trace | None = None) -> Any:
        sent_at = 0.0

        def trace(sending: bool, data: bytes) -> bytes:
            nonlocal sent_at
            if sending:
                sent_at = time.perf_counter()
            elif sent_at:
                observe(time.perf_counter() - sent_at)
                sent_at = 0.0
            return trace_packet(sending, data) if trace_packet is not None else data

        return make_client(connector, trace_packet=trace)

    return factory


async def run_sources(
    settings: Settings,
    readings: Emit,
    drafts: EmitDrafts,
    *,
    metrics: SourceMetrics | None = None,
) -> None:
    """Every machine's connector in its own task, so a dead device never delays another."""
    async with asyncio.TaskGroup() as group:
        for machine in settings.machines:
            kind = machine.connector.type
            observe = delivery = None
            if metrics is not None and kind in ("modbus", "opcua"):
                observe = metrics.observer(machine.id, kind)
                if kind == "opcua":
                    delivery = metrics.delivery_observer(machine.id)
            connector = connector_for(
                machine,
                observe,
                opcua_machines_per_session=settings.opcua.machines_per_session,
                observe_delivery=delivery,
            )
            if connector is not None:
                emit = readings
                if metrics is not None:
                    metrics.add(machine.id, kind, connector)
                    emit = metrics.counted(machine.id, readings)
                group.create_task(
                    _run_device(machine.id, kind, connector, emit), name=f"{kind}:{machine.id}"
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
