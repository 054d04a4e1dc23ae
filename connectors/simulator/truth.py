"""What really happened on the simulated line, for tests to compare the gateway's output with.

Per machine: the parts made (in total and per order), every state interval with its code and
reason, every counter wrap, reset and set, and every connection drop with the parts made while
the gateway could not see the machine. `Truth.write` dumps it as JSON (schema below).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

StateKind = Literal["running", "stopped", "faulted", "idle"]
DropMode = Literal["close", "silent"]
NO_ORDER = ""  # the key of parts made while no order was set
SCHEMA = "mesgw.sim-truth/1"


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat(timespec="microseconds") if ts is not None else None


@dataclass
class Made:
    """Parts made: good + reject = total."""

    good: int = 0
    reject: int = 0

    @property
    def total(self) -> int:
        return self.good + self.reject

    def add(self, reject: bool) -> None:
        if reject:
            self.reject += 1
        else:
            self.good += 1

    def as_dict(self) -> dict[str, int]:
        return {"good": self.good, "reject": self.reject, "total": self.total}


@dataclass
class StateInterval:
    """The machine held `state` (code) with `reason` from `start` to `end` (None: still)."""

    start: datetime
    kind: StateKind
    state: int
    state_name: str | None
    reason: int
    end: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else (self.end - self.start).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "kind": self.kind,
            "state": self.state,
            "state_name": self.state_name,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class CounterEvent:
    """A counter went from `before` to `after` other than by counting one part up."""

    ts: datetime
    counter: str
    kind: Literal["wrap", "reset", "set"]
    before: int
    after: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "ts": _iso(self.ts),
            "counter": self.counter,
            "kind": self.kind,
            "before": self.before,
            "after": self.after,
        }


@dataclass
class Drop:
    """The machine's server did not answer from `start` to `end`; `made` is what it made then."""

    start: datetime
    endpoint: str
    mode: DropMode
    made: Made = field(default_factory=Made)
    end: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "endpoint": self.endpoint,
            "mode": self.mode,
            "made": self.made.as_dict(),
        }


@dataclass
class MachineTruth:
    machine: str
    area: str
    line: str
    endpoint: str
    made: Made = field(default_factory=Made)
    orders: dict[str, Made] = field(default_factory=dict)
    intervals: list[StateInterval] = field(default_factory=list)
    counter_events: list[CounterEvent] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    order: str = NO_ORDER

    @property
    def stops(self) -> list[StateInterval]:
        """The stop and fault intervals."""
        return [i for i in self.intervals if i.kind in ("stopped", "faulted")]

    @property
    def state(self) -> StateInterval | None:
        """The interval the machine is in now."""
        return self.intervals[-1] if self.intervals else None

    def part(self, reject: bool) -> None:
        self.made.add(reject)
        self.orders.setdefault(self.order, Made()).add(reject)
        for drop in self.drops:
            if drop.end is None:
                drop.made.add(reject)

    def enter(
        self, ts: datetime, kind: StateKind, state: int, name: str | None, reason: int
    ) -> None:
        current = self.state
        if current is not None:
            if (current.kind, current.state, current.reason) == (kind, state, reason):
                return
            current.end = ts
        self.intervals.append(StateInterval(ts, kind, state, name, reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "line": self.line,
            "endpoint": self.endpoint,
            "made": self.made.as_dict(),
            "orders": {order: made.as_dict() for order, made in self.orders.items()},
            "counters": dict(self.counters),
            "order": self.order,
            "intervals": [i.as_dict() for i in self.intervals],
            "counter_events": [e.as_dict() for e in self.counter_events],
            "drops": [d.as_dict() for d in self.drops],
        }


@dataclass
class Truth:
    started: datetime
    machines: dict[str, MachineTruth] = field(default_factory=dict)
    scenario_done: datetime | None = None
    ended: datetime | None = None

    def __getitem__(self, machine: str) -> MachineTruth:
        return self.machines[machine]

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "started": _iso(self.started),
            "scenario_done": _iso(self.scenario_done),
            "ended": _iso(self.ended),
            "machines": {m: t.as_dict() for m, t in self.machines.items()},
        }

    def write(self, path: Path) -> None:
        """Replace `path` atomically, so a reader never sees half a file."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
