"""What a machine does over time: run free with random stops, or follow scenario steps.

Time is kept on an absolute schedule (`Pace`): a late wake-up shortens the next wait instead of
shifting everything after it, so a run of N parts at cycle c takes N·c however busy the host.
Which parts are rejects and when random stops come follow only from the seed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from connectors.simulator.machine import SimMachine
from connectors.simulator.scenario import (
    DropStep,
    FaultStep,
    IdleStep,
    OrderStep,
    ResetStep,
    RunStep,
    SetStep,
    Step,
    StopStep,
    WaitStep,
)
from connectors.simulator.truth import DropMode, StateKind

StartDrop = Callable[[str, float, DropMode], Awaitable[object]]


class Pace:
    """A schedule in event-loop time: `after(s)` sleeps until s past the previous deadline."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.at = self._loop.time()

    async def after(self, seconds: float) -> None:
        self.at += seconds
        # sleep(0) still yields, so catching up never starves the servers.
        await asyncio.sleep(max(0.0, self.at - self._loop.time()))


def next_order(order: str, length: int) -> str:
    """The next order number: the trailing number counts up (WO-0099 → WO-0100, WO-9 → WO-10),
    back to 0 in its own width if the tag has no room for another digit."""
    match = re.search(r"\d+$", order)
    if match is None:
        return (order[: length - 1] + "1") if order else "1"
    prefix, digits = order[: match.start()], match.group()
    following = str(int(digits) + 1).zfill(len(digits))
    if len(prefix) + len(following) > length:
        following = "0" * len(digits)
    return prefix + following


async def free_run(m: SimMachine) -> None:
    """Make parts at the cycle time with random rejects and stops, until cancelled."""
    spec = m.spec
    pace = Pace()
    await m.set_state("running", "execute")
    while True:
        stopped = False
        for stop in spec.random_stops:
            if m.rng.random() < stop.probability:
                seconds = m.rng.uniform(stop.min_s, stop.max_s)
                reason = m.rng.choice(stop.reasons)
                kind: StateKind = "faulted" if stop.kind == "fault" else "stopped"
                await m.set_state(kind, stop.state_ref(), reason)
                await pace.after(seconds)
                await m.set_state("running", "execute")
                stopped = True
                break
        if stopped:
            continue
        await pace.after(spec.cycle_time_s)
        await m.make_part(reject=m.rng.random() < spec.reject_ratio)
        if spec.order_every_parts and m.parts_in_order >= spec.order_every_parts:
            await m.set_order(next_order(m.order, spec.order_length))
            if spec.reset_on_order:
                await m.set_counter(None, 0)


async def _run(m: SimMachine, step: RunStep, pace: Pace) -> None:
    cycle_s = step.cycle_s or m.spec.cycle_time_s
    parts = step.part_count(cycle_s)
    rejects = set(m.rng.sample(range(parts), step.rejects))
    start = pace.at
    await m.set_state("running", "execute", cycle_s=cycle_s)
    for i in range(parts):
        await pace.after(cycle_s)
        await m.make_part(reject=i in rejects)
    if step.seconds is not None:
        await pace.after(start + step.seconds - pace.at)


async def run_steps(m: SimMachine, steps: list[Step], start_drop: StartDrop) -> None:
    """Execute a machine's scenario steps in order."""
    pace = Pace()
    for step in steps:
        if isinstance(step, RunStep):
            await _run(m, step, pace)
        elif isinstance(step, StopStep):
            await m.set_state("stopped", step.state, step.reason)
            await pace.after(step.seconds)
        elif isinstance(step, FaultStep):
            await m.set_state("faulted", step.state, step.reason)
            await pace.after(step.seconds)
        elif isinstance(step, IdleStep):
            await m.set_state("idle", "idle")
            await pace.after(step.seconds)
        elif isinstance(step, WaitStep):
            await pace.after(step.seconds)
        elif isinstance(step, ResetStep):
            await m.set_counter(step.counter, 0)
        elif isinstance(step, SetStep):
            await m.set_counter(step.counter, step.value)
        elif isinstance(step, OrderStep):
            await m.set_order(step.order)
        elif isinstance(step, DropStep):
            await start_drop(m.id, step.seconds, step.mode)
