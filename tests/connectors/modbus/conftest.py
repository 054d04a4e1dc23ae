"""Real pymodbus servers for the Modbus connector's tests, and a sink for what devices emit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from connectors.modbus.device import ModbusDevice
from connectors.modbus.testing import ModbusSimulator, Readings


@pytest.fixture
async def simulator() -> AsyncIterator[Callable[..., Awaitable[ModbusSimulator]]]:
    """Start pymodbus servers: `await simulator(units, framer=..., ...)`; stopped afterwards."""
    started: list[ModbusSimulator] = []

    async def start(*args: Any, **kwargs: Any) -> ModbusSimulator:
        sim = ModbusSimulator(*args, **kwargs)
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def running() -> AsyncIterator[Callable[[ModbusDevice, Readings], asyncio.Task[None]]]:
    """Run devices in the background: `running(device, readings)`; cancelled afterwards."""
    tasks: list[asyncio.Task[None]] = []

    def run(device: ModbusDevice, readings: Readings) -> asyncio.Task[None]:
        task = asyncio.create_task(device.run(readings), name=f"modbus:{device.machine}")
        tasks.append(task)
        return task

    yield run
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
