"""A seeded, made-up morning of three machines, as a sample log: what the golden replay of
`plant/` is recorded from (`golden_replay.py --plant`); the committed log is the fixture, not this.

It visits what the recorded demo and end-to-end runs rarely do: 16-bit wraps, PLC resets,
spikes, a preset after a PLC restart, unreadable tags, link gaps, a gateway stop and start,
a shift start and a break, order tags and commands (some refused), reason changes during a
stop, reason rules, a Machinery mode tag, and a machine whose stops are only inferred.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from connectors.sample import Link, Sample
from gateway.samples import Logged
from rules.inputs import GatewayMark, OrderCommand

T0 = datetime(2026, 3, 2, 5, 40, tzinfo=UTC)  # a Monday, 20 minutes before the early shift
POLLS = 900
POLL_S = 10.0


def readings(seed: int = 13) -> Iterator[Logged]:
    rng = random.Random(seed)
    press = {"good": 65000, "reject": 10, "state": 6, "reason": 0, "door": False, "order": "A-1"}
    oven = {"total": 500, "reject": 3, "state": 3, "mode": 3, "reason": 0}
    saw = {"total": 99000}
    filler = {"good": 0, "state": 1, "reason": 0}
    last: dict[tuple[str, str], object] = {}
    away = 0  # polls the gateway is still stopped for
    links: dict[str, int] = {"press-1": 0, "oven-1": 0, "saw-1": 0, "filler-1": 0}
    order_n = 1
    oven_order: str | None = None

    def emit(machine: str, values: dict[str, object], ts: datetime) -> Iterator[Logged]:
        for tag, value in values.items():
            key = (machine, tag)
            if last.get(key) != value or rng.random() < 0.05:
                last[key] = value
                yield Sample(machine, tag, value, ts)  # type: ignore[arg-type]

    for p in range(POLLS):
        ts = T0 + timedelta(seconds=p * POLL_S + rng.random())
        if away:
            away -= 1
            if not away:
                yield GatewayMark("start", ts)
                last.clear()
            continue
        if p in (400, 700):
            yield GatewayMark("stop", ts)
            away = rng.randint(3, 12)
            continue

        # press-1: PackML with reasons, an order tag and a door that makes a tool change
        if press["state"] == 6 and rng.random() < 0.06:
            press["state"], press["reason"] = rng.choice([(11, 101), (17, 0), (9, 102), (5, 0)])
            press["door"] = rng.random() < 0.5
        elif press["state"] != 6 and rng.random() < 0.25:
            press["state"], press["reason"], press["door"] = 6, 0, False
        elif press["state"] != 6 and rng.random() < 0.2:
            press["reason"] = rng.choice([101, 102, 103])
        if press["state"] == 6:
            made = rng.randint(0, 25)
            press["good"] = (press["good"] + made) % 65536
            if rng.random() < 0.3:
                press["reject"] = (press["reject"] + 1) % 65536
        if rng.random() < 0.01:
            order_n += 1
            press["order"] = f"A-{order_n}"
        if rng.random() < 0.005:
            press["good"] = (press["good"] + 20000) % 65536  # a spike
        if rng.random() < 0.004:
            press["good"] = 1200  # the PLC restarted at a preset
        # oven-1: total and reject, resettable, Machinery state by mode, orders by command
        if oven["state"] == 3 and rng.random() < 0.05:
            oven["state"], oven["reason"] = rng.choice([(1, 7), (2, 201), (0, 0)])
        elif oven["state"] != 3 and rng.random() < 0.3:
            oven["state"], oven["reason"] = 3, 0
        if oven["state"] == 3:
            oven["total"] = (oven["total"] + rng.randint(0, 12)) % 100000
            if rng.random() < 0.2:
                oven["reject"] = (oven["reject"] + 1) % 100000
        if rng.random() < 0.01:
            oven["total"], oven["reject"] = rng.randint(0, 5), 0  # reset at job start
        if rng.random() < 0.02:
            oven["mode"] = rng.choice([1, 2, 3, 3, 3])
        # saw-1: a total counter only; its stops are inferred from counts that stop
        if rng.random() < 0.85 and (p // 30) % 4 != 3:
            saw["total"] = (saw["total"] + rng.randint(1, 6)) % 100000

        # filler-1: short stops that end running again (micro-stops), a few long ones
        if filler["state"] == 1 and rng.random() < 0.15:
            filler["state"], filler["reason"] = rng.choice([(2, 101), (2, 102), (3, 0), (2, 0)])
        elif filler["state"] != 1 and rng.random() < 0.4:
            filler["state"], filler["reason"] = 1, 0
        elif filler["state"] == 2 and rng.random() < 0.2:
            filler["reason"] = rng.choice([101, 102, 0])
        if filler["state"] == 1:
            filler["good"] += rng.randint(5, 20)

        machines = (("press-1", press), ("oven-1", oven), ("saw-1", saw), ("filler-1", filler))
        for machine, values in machines:
            if links[machine]:
                links[machine] -= 1
                if not links[machine]:
                    yield Link(machine, True, ts)
                    for key in [k for k in last if k[0] == machine]:
                        del last[key]
                else:
                    continue
            elif rng.random() < 0.01:
                yield Link(machine, False, ts, error="connection reset")
                links[machine] = rng.randint(1, 8)
                continue
            if rng.random() < 0.01:
                tag = rng.choice(list(values))
                yield Sample(machine, tag, None, ts, quality="bad", status="BadNodeIdUnknown")
                last.pop((machine, tag), None)
                continue
            yield from emit(machine, values, ts)

        if rng.random() < 0.02:
            if oven_order is None or rng.random() < 0.2:
                oven_order = f"B-{p}"
                yield OrderCommand("oven-1", "start", ts, "http", order_id=oven_order, quantity=400)
            else:
                wanted = rng.choice([oven_order, "B-nope", None])
                yield OrderCommand("oven-1", "stop", ts, "mqtt", order_id=wanted)
                if wanted in (oven_order, None):
                    oven_order = None
