"""A synthetic event source: machines of connector type `synthetic` make parts at a set rate.

It stands in for the PLC side in demos and tests of the spine (outbox → MQTT → store): it
produces the same event drafts the rules will, with exact, seedable numbers. The simulated
PLC line (OPC UA / Modbus servers) replaces it for real connector runs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from gateway.config import MachineConfig, SyntheticConnector
from gateway.events import CountData, DowntimeData, Draft, StateData

Emit = Callable[[Sequence[Draft]], Awaitable[object]]


@dataclass
class SyntheticMachine:
    """One machine's production as a deterministic function of its seed and the interval ends."""

    machine: MachineConfig
    spec: SyntheticConnector
    rng: random.Random = field(init=False)
    remainder_s: float = 0.0
    downtime_seq: int = 0
    stopped_until: datetime | None = None
    stop_started: datetime | None = None
    emitted: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.spec.seed)

    def _draft(self, kind: str, ts: datetime, data: object) -> Draft:
        return Draft(
            type=kind,  # type: ignore[arg-type]
            ts=ts,
            area=self.machine.area,
            line=self.machine.line,
            machine=self.machine.id,
            data=data,  # type: ignore[arg-type]
        )

    def interval(self, start: datetime, end: datetime) -> list[Draft]:
        """The events of one count interval: the parts made, and any stop that began or ended."""
        drafts: list[Draft] = []
        running_s = (end - start).total_seconds()
        if self.stopped_until is not None:
            if end < self.stopped_until:
                running_s = 0.0
            else:
                resumed = self.stopped_until
                drafts += self._end_stop(resumed)
                running_s = (end - resumed).total_seconds()
        elif self.spec.stop_probability and self.rng.random() < self.spec.stop_probability:
            drafts += self._start_stop(end)
        made_s = running_s + self.remainder_s
        parts = int(made_s // self.spec.cycle_time_s)
        self.remainder_s = made_s - parts * self.spec.cycle_time_s
        reject = sum(1 for _ in range(parts) if self.rng.random() < self.spec.reject_ratio)
        data = CountData(good=parts - reject, reject=reject, total=parts, start=start, end=end)
        drafts.insert(0, self._draft("count", end, data))
        return drafts

    def _start_stop(self, at: datetime) -> list[Draft]:
        self.downtime_seq += 1
        self.stop_started = at
        # Whole milliseconds, the contract's resolution, so duration = end - start exactly.
        self.stopped_until = at + timedelta(milliseconds=self.rng.randint(5_000, 60_000))
        dt = DowntimeData(downtime_id=self._downtime_id(), start=at, reason_code="synthetic")
        return [
            self._draft("state", at, StateData(bucket="down", code="synthetic", since=at)),
            self._draft("downtime.started", at, dt),
        ]

    def _end_stop(self, at: datetime) -> list[Draft]:
        started = self.stop_started
        assert started is not None
        self.stopped_until = self.stop_started = None
        dt = DowntimeData(
            downtime_id=self._downtime_id(),
            start=started,
            end=at,
            duration_s=(at - started).total_seconds(),
            reason_code="synthetic",
        )
        return [
            self._draft("downtime.ended", at, dt),
            self._draft("state", at, StateData(bucket="running", since=at)),
        ]

    def _downtime_id(self) -> str:
        return f"{self.machine.id}-syn-{self.downtime_seq}"


async def run_synthetic(
    machines: Sequence[MachineConfig], emit: Emit, *, clock: Callable[[], float] = time.time
) -> None:
    """Emit each synthetic machine's events every count interval until cancelled or done."""
    sims = [
        SyntheticMachine(m, m.connector)
        for m in machines
        if isinstance(m.connector, SyntheticConnector)
    ]
    if not sims:
        return
    async with asyncio.TaskGroup() as group:
        for sim in sims:
            group.create_task(_run_one(sim, emit, clock), name=f"synthetic:{sim.machine.id}")


async def _run_one(sim: SyntheticMachine, emit: Emit, clock: Callable[[], float]) -> None:
    structlog.contextvars.bind_contextvars(machine=sim.machine.id, connector="synthetic")
    period = sim.spec.count_interval_s
    start = datetime.fromtimestamp(clock(), UTC)
    limit = sim.spec.events
    while not limit or sim.emitted < limit:
        due = start.timestamp() + period
        await asyncio.sleep(max(0.0, due - clock()))
        end = datetime.fromtimestamp(max(due, clock()), UTC)
        drafts = sim.interval(start, end)
        if limit:
            drafts = drafts[: limit - sim.emitted]
        await emit(drafts)
        sim.emitted += len(drafts)
        start = end
