"""The simulated line: real OPC UA and Modbus TCP servers, the machines behind them, the truth.

```python
async with SimulatedLine(config) as line:
    await line.run_scenario(scenario)
    assert line.truth["filler-1"].made.total == 137
```
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from common.errors import ConfigError
from common.logging import get_logger
from common.net import free_port
from connectors.simulator.behaviour import free_run, run_steps
from connectors.simulator.config import ServerKey, SimConfig
from connectors.simulator.gateway_config import Endpoint, gateway_machines
from connectors.simulator.machine import SimMachine, now
from connectors.simulator.modbus_server import ModbusStation
from connectors.simulator.opcua_server import OpcUaStation
from connectors.simulator.scenario import Scenario, check_scenario
from connectors.simulator.truth import Drop, DropMode, MachineTruth, Truth

log = get_logger("connectors.simulator")

Station = OpcUaStation | ModbusStation


@dataclass
class _Outage:
    """A station that does not answer; `until` is loop time, None until start_servers()."""

    mode: DropMode
    until: float | None
    drops: list[Drop]
    task: asyncio.Task[None] = field(init=False)
    down: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


class SimulatedLine:
    """Machines of `config` served over OPC UA and Modbus TCP, idle until told to run."""

    def __init__(self, config: SimConfig, *, free_running: bool = False) -> None:
        problems = config.problems("<config>")
        if problems:
            raise ConfigError(problems)
        self.config = config
        self._free_running = free_running
        self.truth = Truth(started=now())
        self.machines: dict[str, SimMachine] = {}
        self._stations: list[Station] = []
        self._station_of: dict[str, Station] = {}
        self._outages: dict[int, _Outage] = {}  # id(station) →
        self._free: dict[str, asyncio.Task[None]] = {}
        self._scripted: set[str] = set()
        self._group = asyncio.TaskGroup()
        self._exit = contextlib.AsyncExitStack()

    def _build_stations(self) -> None:
        groups: dict[ServerKey, list[str]] = {}
        for spec in self.config.machines:
            groups.setdefault(self.config.server_key(spec), []).append(spec.id)
        for key, ids in groups.items():
            specs = [self.config.machine(i) for i in ids]
            host = self.config.host(specs[0])
            port = key.port or free_port()
            station: Station
            if key.protocol == "opcua":
                station = OpcUaStation(host, port, self.config.opcua.namespace, specs)
            else:
                orders = [(s, self.config.byte_order(s)) for s in specs]
                station = ModbusStation(host, port, orders)
            self._stations.append(station)
            for spec in specs:
                self._station_of[spec.id] = station

    async def __aenter__(self) -> SimulatedLine:
        self._build_stations()
        async with contextlib.AsyncExitStack() as stack:
            for station in self._stations:
                await station.setup()
            self.truth.started = now()
            for spec in self.config.machines:
                station = self._station_of[spec.id]
                truth = MachineTruth(spec.id, spec.area, spec.line, station.endpoint)
                self.truth.machines[spec.id] = truth
                machine = SimMachine(spec, self.config.seed, truth, station)
                self.machines[spec.id] = machine
                await machine.start()  # initial values in place before anyone can connect
            for station in self._stations:
                await station.start()
                stack.push_async_callback(station.stop)
            await self._group.__aenter__()
            self._exit = stack.pop_all()
        log.info("simulated line serving", endpoints=sorted({s.endpoint for s in self._stations}))
        if self._free_running:
            self.free_run()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._free.values():
            task.cancel()
        for outage in self._outages.values():
            outage.task.cancel()
        try:
            await self._group.__aexit__(exc_type, exc, tb)
        finally:
            self._outages.clear()
            await self._exit.aclose()
            self.truth.ended = now()

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        """Where each machine is served (ports chosen at start included)."""
        out = {}
        for spec in self.config.machines:
            station = self._station_of[spec.id]
            unit = spec.modbus_unit if spec.protocol == "modbus" else None
            out[spec.id] = Endpoint(spec.protocol, station.host, station.port, unit)
        return out

    def gateway_machines(self) -> list[dict[str, Any]]:
        """The gateway's `[[machines]]` entries that read this line as it is served."""
        return gateway_machines(self.config, self.endpoints)

    def free_run(self, machines: Iterable[str] | None = None) -> None:
        """Let machines make parts at their cycle time with random rejects and stops."""
        for machine_id in machines if machines is not None else list(self.machines):
            if machine_id in self._scripted:
                raise RuntimeError(f"{machine_id} is running a scenario")
            if machine_id in self._free:
                continue
            self._free[machine_id] = self._group.create_task(
                free_run(self.machines[machine_id]), name=f"sim-free-{machine_id}"
            )

    async def halt(self) -> None:
        """Stop making parts on every free-running machine; the servers go on answering."""
        for machine_id in list(self._free):
            await self._stop_free(machine_id)

    async def _stop_free(self, machine_id: str) -> None:
        task = self._free.pop(machine_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_scenario(self, scenario: Scenario) -> None:
        """Run every machine's steps concurrently; returns when all steps and drops are done."""
        problems = check_scenario(scenario, self.config, "<scenario>")
        if problems:
            raise ConfigError(problems)
        busy = self._scripted & set(scenario.steps)
        if busy:
            raise RuntimeError(f"{', '.join(sorted(busy))} already running a scenario")
        restores: list[asyncio.Task[None]] = []

        async def start_drop(machine_id: str, seconds: float, mode: DropMode) -> None:
            outage = self._start_drop(machine_id, seconds, mode)
            restores.append(outage.task)

        async def script(machine_id: str) -> None:
            # Each machine goes idle (or free) at its own last step, not when all are done.
            machine = self.machines[machine_id]
            await run_steps(machine, scenario.steps[machine_id], start_drop)
            self._scripted.discard(machine_id)
            if scenario.end == "free":
                self.free_run([machine_id])
            else:
                await machine.set_state("idle", "idle")

        self._scripted |= set(scenario.steps)
        try:
            async with asyncio.TaskGroup() as group:
                for machine_id in scenario.steps:
                    await self._stop_free(machine_id)
                    group.create_task(script(machine_id), name=f"sim-steps-{machine_id}")
            for restore in restores:
                await restore
        finally:
            self._scripted -= set(scenario.steps)
        self.truth.scenario_done = now()

    async def drop(
        self, machine: str, seconds: float, mode: DropMode = "close"
    ) -> asyncio.Task[None]:
        """Take the machine's server down for `seconds`; returns once it is down, with the task
        that brings it back.

        Every machine on that server drops with it. `close` stops the server (connections closed,
        new ones refused); `silent` (Modbus) keeps connections but answers nothing until the end.
        A drop while the server is already down extends that outage (in its first mode).
        """
        outage = self._start_drop(machine, seconds, mode)
        await outage.down.wait()
        return outage.task

    def _start_drop(self, machine: str, seconds: float, mode: DropMode) -> _Outage:
        station = self._station_of[machine]
        if mode == "silent" and not isinstance(station, ModbusStation):
            raise ValueError("silent drops are Modbus only")
        until = asyncio.get_running_loop().time() + seconds
        outage = self._outages.get(id(station))
        if outage is None:
            return self._begin_outage(station, mode, until)
        if outage.until is None:
            raise RuntimeError(f"{station.endpoint} is stopped; start_servers() first")
        outage.until = max(outage.until, until)
        return outage

    def _begin_outage(self, station: Station, mode: DropMode, until: float | None) -> _Outage:
        ts = now()
        drops = [Drop(ts, station.endpoint, mode) for _ in station.machines]
        for machine_id, record in zip(station.machines, drops, strict=True):
            self.truth[machine_id].drops.append(record)
        outage = _Outage(mode, until, drops)
        self._outages[id(station)] = outage
        outage.task = self._group.create_task(
            self._outage(station, outage), name=f"sim-outage-{station.port}"
        )
        return outage

    async def _outage(self, station: Station, outage: _Outage) -> None:
        # Runs beside the machines: stopping asyncua takes up to a second (its clock task), and
        # a machine that drops its link must not stand still meanwhile.
        if outage.mode == "silent":
            assert isinstance(station, ModbusStation)
            station.silence()
        else:
            await station.stop()
        outage.down.set()
        log.info(
            "server down", endpoint=station.endpoint, mode=outage.mode, machines=station.machines
        )
        loop = asyncio.get_running_loop()
        if outage.until is None:
            await outage.released.wait()
        # Not a poll: the deadline moves when a later drop extends the outage.
        while outage.until is not None and (delay := outage.until - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        if outage.mode == "silent":
            assert isinstance(station, ModbusStation)
            station.answer()
        else:
            await station.start()
        del self._outages[id(station)]
        ts = now()
        for record in outage.drops:
            record.end = ts
        log.info("server up", endpoint=station.endpoint, machines=station.machines)

    async def stop_servers(self) -> None:
        """Stop every server until start_servers(); the machines go on (recorded as drops)."""
        stopping = [
            self._begin_outage(station, "close", None)
            for station in self._stations
            if id(station) not in self._outages
        ]
        for outage in stopping:
            await outage.down.wait()

    async def start_servers(self) -> None:
        """Bring back every server that stop_servers() took down."""
        held = [o for o in self._outages.values() if o.until is None]
        for outage in held:
            outage.until = 0.0
            outage.released.set()
        for outage in held:
            await outage.task
