"""The rules engine: samples, links, ticks and order commands in; event drafts out.

Pure and deterministic: no I/O, no clock reads (time comes with the inputs), so the daemon
and `mesgw replay` get the same events from the same inputs. `snapshot()` is everything
needed to continue after a restart; commit it with the drafts it belongs to.
"""

from __future__ import annotations

import json
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from common.events import Draft
from common.sample import Link, Sample
from rules.calendar import Calendar, utc
from rules.inputs import CommandResult, OrderCommand, PlannedOrder, Tick
from rules.machine import Machine
from rules.orders import ActiveOrder, OrderBook, master_problems, order_id
from rules.saved import restore, snapshot
from rules.spec import MachineSpec, PlantRules, machine_spec, plant_rules

SNAPSHOT_VERSION = 1
Input = Sample | Link | Tick


class Engine:
    """All machines of one gateway."""

    def __init__(self, machines: Sequence[MachineSpec], plant: PlantRules | None = None) -> None:
        self.specs = list(machines)
        self.plant = plant if plant is not None else PlantRules()
        self._out: list[Draft] = []
        self.book = OrderBook([m.id for m in machines])
        zone = self.plant.rules.timezone
        calendars = {
            name: Calendar(name, config, zone) for name, config in self.plant.shifts.items()
        }
        # Inputs the rules could not use (unknown machine, clock far ahead): counted, not fatal.
        self.stats: Tally[str] = Tally()
        self.machines: dict[str, Machine] = {}
        for spec in machines:
            name = spec.shift_calendar
            if name is None and "default" in calendars:
                name = "default"
            calendar = calendars[name] if name is not None else None
            self.machines[spec.id] = Machine(
                spec, self.plant, calendar, self.book, self._out, self.stats
            )
        self._all = list(self.machines.values())
        self.late_s = self.plant.rules.late_sample_s

    @classmethod
    def from_settings(cls, settings: Any) -> Engine:
        """An engine for a loaded gateway configuration (`gateway.config.Settings`)."""
        return cls([machine_spec(m) for m in settings.machines], plant_rules(settings))

    # -- inputs ---------------------------------------------------------------------------------

    def feed(self, reading: Input) -> list[Draft]:
        """One sample, link change or tick; the drafts it completes (usually none)."""
        kind = type(reading)
        if kind is Sample:
            machine = self.machines.get(reading.machine)  # type: ignore[union-attr]
            if machine is None:
                self.stats["unknown machine"] += 1
            else:
                machine.sample(reading)  # type: ignore[arg-type]
        elif kind is Tick:
            # The clock says how late it is, not what happened: a machine's time follows it at
            # a distance, so samples still on their way are dated by their own timestamps.
            clock = reading.ts.timestamp()
            t = clock - self.late_s
            for machine in self._all:
                time = machine.time
                time.clock = clock
                if not time.started:
                    time.advance(clock)  # watched from now on: unknown until data comes
                elif t >= time.deadline:
                    time.advance(t)
                elif t > time.now:
                    time.now = t
        elif kind is Link:
            machine = self.machines.get(reading.machine)  # type: ignore[union-attr]
            if machine is None:
                self.stats["unknown machine"] += 1
            else:
                machine.link(reading)  # type: ignore[arg-type]
        else:
            raise TypeError(f"not a reading: {reading!r}")
        out = self._out
        if not out:
            return []
        drafts = out[:]
        out.clear()
        return drafts

    def in_instant_order(self, readings: Iterable[Input]) -> Iterator[Input]:
        """The readings in the order the rules take them: one machine's samples with one
        timestamp are one reading of the PLC; its counters go first, its state tag last.

        A part counted in the same scan as an order or state switch was made before the PLC
        could show the switch, so it belongs to what was active before; and a state is
        judged with the reason read beside it. The order in which a connector happens to
        list the tags must not decide either.
        """
        held: list[Input] = []
        state: Input | None = None
        machine: Machine | None = None
        ts: object = None
        name: str | None = None
        for reading in readings:
            if type(reading) is not Sample:
                if held or state is not None:
                    yield from held
                    held.clear()
                    if state is not None:
                        yield state
                        state = None
                name = None
                yield reading
                continue
            sample = reading
            if sample.machine != name or sample.ts != ts:
                if held or state is not None:
                    yield from held
                    held.clear()
                    if state is not None:
                        yield state
                        state = None
                name = sample.machine
                ts = sample.ts
                machine = self.machines.get(name)
            if machine is None or sample.tag in machine.counters:
                yield sample
            elif sample.tag == machine.state_tag:
                if state is not None:
                    held.append(state)
                state = sample
            else:
                held.append(sample)
        yield from held
        if state is not None:
            yield state

    def feed_many(self, readings: Iterable[Input]) -> list[Draft]:
        """Several inputs, in instant order; all their drafts in one list."""
        drafts: list[Draft] = []
        for reading in self.in_instant_order(readings):
            made = self.feed(reading)
            if made:
                drafts.extend(made)
        return drafts

    def flush(self) -> list[Draft]:
        """Close every machine's open count interval at its time, so every part counted so
        far is in an event (replay's end; the daemon needs it not: its snapshot keeps them)."""
        for machine in self._all:
            machine.flush()
        drafts = self._out[:]
        self._out.clear()
        return drafts

    def stop(self, ts: datetime) -> list[Draft]:
        """The gateway stops at ts: every machine's counts are closed and its state becomes
        unknown ("gateway stopped"), so no retained state claims a watch that has ended."""
        t = ts.timestamp()
        for machine in self._all:
            machine.stop(t)
        drafts = self._out[:]
        self._out.clear()
        return drafts

    def restart(self) -> None:
        """Go on as a restarted gateway does: from this engine's own saved state (replay of
        a sample log that records a gateway start)."""
        saved = json.loads(json.dumps(self.snapshot()))
        stats = self.stats
        self.__init__(self.specs, self.plant)  # type: ignore[misc]
        self.stats = stats
        for machine in self._all:
            machine.stats = stats
        self.restore(saved)

    def command(self, cmd: OrderCommand) -> tuple[CommandResult, list[Draft]]:
        """Start or stop a work order; the reply, and the drafts (also those of time passing)."""
        machine = self.machines.get(cmd.machine)
        if machine is None:
            return self._refuse(cmd, f"unknown machine {cmd.machine!r}"), []
        t = machine.time.of(cmd.ts)
        result = self._apply(machine, cmd, t)
        drafts = self._out[:]
        self._out.clear()
        return result, drafts

    def _apply(self, machine: Machine, cmd: OrderCommand, t: float) -> CommandResult:
        wanted = order_id(cmd.order_id) if cmd.order_id is not None else None
        running = machine.orders.active
        if cmd.action == "start":
            problem = master_problems(wanted, cmd.quantity, cmd.ideal_cycle_time_s)
            if problem is not None or wanted is None:
                return self._refuse(cmd, problem or "order_id is required")
            if running is not None:
                if running.order_id == wanted:
                    return self._ok(machine, wanted, "running")
                return self._refuse(
                    cmd, f"order {running.order_id} is running on {machine.id}; stop it first"
                )
            elsewhere = self.book.running.get(wanted)
            if elsewhere is not None:
                return self._refuse(cmd, f"order {wanted} is running on {elsewhere}")
            planned = self.book.planned.get(wanted)
            if planned is not None and planned.machine not in (None, machine.id):
                return self._refuse(cmd, f"order {wanted} is planned for {planned.machine}")
            order = ActiveOrder(
                order_id=wanted,
                origin=cmd.origin,
                started=t,
                product=cmd.product,
                quantity=cmd.quantity,
                ideal_cycle_time_s=cmd.ideal_cycle_time_s,
            )
            machine.start_order(t, self.book.with_master_data(order))
            return self._ok(machine, wanted, "running")
        if cmd.action != "stop":
            return self._refuse(cmd, f"unknown action {cmd.action!r}")
        if running is None:
            if wanted is not None and wanted == machine.orders.last_completed:
                return self._ok(machine, wanted, "completed")
            if wanted is not None:
                return self._refuse(cmd, f"order {wanted} is not running on {machine.id}")
            return self._refuse(cmd, f"no order is running on {machine.id}")
        if wanted is not None and wanted != running.order_id:
            return self._refuse(
                cmd,
                f"order {wanted} is not running on {machine.id} (running: {running.order_id})",
            )
        machine.stop_order(t)
        return self._ok(machine, running.order_id, "completed")

    @staticmethod
    def _ok(machine: Machine, oid: str, status: str) -> CommandResult:
        return CommandResult(ok=True, machine=machine.id, order_id=oid, status=status)

    @staticmethod
    def _refuse(cmd: OrderCommand, error: str) -> CommandResult:
        return CommandResult(ok=False, machine=cmd.machine, order_id=cmd.order_id, error=error)

    def plan(self, orders: Sequence[PlannedOrder]) -> int:
        """Import scheduled orders (master data); all or none (`PlanRejected` says why)."""
        return self.book.plan(orders)

    def orders(self) -> list[dict[str, Any]]:
        """The active order of each machine, then the planned orders, as JSON-able dicts."""
        active = [
            {
                "order_id": order.order_id,
                "machine": machine,
                "status": "running",
                "product": order.product,
                "quantity": order.quantity,
                "ideal_cycle_time_s": order.ideal_cycle_time_s,
                "origin": order.origin,
                "started": utc(order.started).isoformat(timespec="milliseconds"),
            }
            for machine, order in ((m.id, m.orders.active) for m in self._all)
            if order is not None
        ]
        return active + self.book.planned_list()

    # -- saved state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: counter baselines, open intervals, states, downtimes, orders."""
        return {
            "version": SNAPSHOT_VERSION,
            "machines": {m.id: snapshot(m) for m in self._all},
            "orders": self.book.to_json(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from a snapshot (call before the first input). Machines no longer
        configured are dropped; new ones start afresh."""
        version = snapshot.get("version")
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"rules snapshot version {version!r} is not {SNAPSHOT_VERSION}")
        self.book.load(snapshot.get("orders", {}))
        for mid, data in snapshot.get("machines", {}).items():
            machine = self.machines.get(mid)
            if machine is not None:
                restore(machine, data)
