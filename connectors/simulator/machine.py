"""One simulated machine: its counters, state, reason and order, and the truth of each change.

Every change is recorded in the truth and then handed to the machine's server in one call, so
the truth never runs ahead of what a client can read by more than that one call.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal, Protocol

from connectors.simulator.config import CounterName, MachineSpec, StateRef
from connectors.simulator.states import state_code, state_name
from connectors.simulator.truth import CounterEvent, MachineTruth, StateKind

TagValue = bool | int | float | str


class Sink(Protocol):
    """A server that serves a machine's tag values."""

    async def publish(self, machine: str, values: Mapping[str, TagValue], ts: datetime) -> None:
        """Serve `values` (every tag of the machine) from now on, stamped `ts`."""


def now() -> datetime:
    return datetime.now(UTC)


class SimMachine:
    def __init__(self, spec: MachineSpec, seed: int, truth: MachineTruth, sink: Sink) -> None:
        self.spec = spec
        # A string seed is hashed with SHA-512: the same on every run and platform.
        self.rng = random.Random(f"{seed}/{spec.id}")
        self.truth = truth
        self._sink = sink
        self.counters: dict[str, int] = {n: c.initial for n, c in spec.counters.items()}
        self.kind: StateKind = "idle"
        self.state = state_code(spec.states, "idle")
        self.reason = 0
        self.cycle_s = spec.cycle_time_s
        self.order = spec.order
        self.parts_in_order = 0
        truth.counters = dict(self.counters)
        truth.order = self.order

    @property
    def id(self) -> str:
        return self.spec.id

    def values(self) -> dict[str, TagValue]:
        """Every tag the servers know, by the names in `layout`."""
        running = self.kind == "running"
        faulted = self.kind == "faulted"
        stopped = self.kind == "stopped"
        idle = self.kind == "idle"
        values: dict[str, TagValue] = dict(self.counters)
        values.update(
            state=self.state,
            reason=self.reason,
            order=self.order,
            speed=60.0 / self.cycle_s if running else 0.0,
            running=running,
            faulted=faulted,
            stopped=stopped,
            idle=idle,
            status=running | faulted << 1 | stopped << 2 | idle << 3,
            lamp_green=running,
            lamp_amber=stopped or idle,
            lamp_red=faulted,
        )
        return values

    async def _publish(self, ts: datetime) -> None:
        self.truth.counters = dict(self.counters)
        self.truth.order = self.order
        await self._sink.publish(self.id, self.values(), ts)

    async def start(self) -> None:
        """Serve the initial values and open the first state interval."""
        ts = now()
        name = state_name(self.spec.states, self.state)
        self.truth.enter(ts, self.kind, self.state, name, self.reason)
        await self._publish(ts)

    async def make_part(self, reject: bool) -> None:
        ts = now()
        for name, value in self.counters.items():
            if name == "total" or (name == "reject") == reject:
                after = (value + 1) % self.spec.counters[name].wrap_at  # type: ignore[index]
                if after == 0:
                    self.truth.counter_events.append(CounterEvent(ts, name, "wrap", value, after))
                self.counters[name] = after
        self.truth.part(reject)
        self.parts_in_order += 1
        await self._publish(ts)

    async def set_state(
        self, kind: StateKind, state: StateRef, reason: int = 0, cycle_s: float | None = None
    ) -> None:
        ts = now()
        self.kind = kind
        self.state = state_code(self.spec.states, state)
        self.reason = reason
        self.cycle_s = cycle_s or self.spec.cycle_time_s
        name = state_name(self.spec.states, self.state)
        self.truth.enter(ts, kind, self.state, name, reason)
        await self._publish(ts)

    async def set_counter(self, counter: CounterName | None, value: int) -> None:
        """Set one counter (None: every counter) to `value`; 0 is a PLC counter reset."""
        ts = now()
        kind: Literal["reset", "set"] = "reset" if value == 0 else "set"
        for name in [counter] if counter is not None else list(self.counters):
            before = self.counters[name]
            self.counters[name] = value
            self.truth.counter_events.append(CounterEvent(ts, name, kind, before, value))
        await self._publish(ts)

    async def set_order(self, order: str) -> None:
        ts = now()
        self.order = order
        self.parts_in_order = 0
        await self._publish(ts)
