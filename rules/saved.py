"""A machine's saved state: everything needed to go on after a restart without counting a
part twice or never. The format is the one gateways have saved (engine SNAPSHOT_VERSION)."""

from __future__ import annotations

import math
from typing import Any

from rules.downtime import Downtime
from rules.machine import INF, Machine
from rules.orders import ActiveOrder


def snapshot(m: Machine) -> dict[str, Any]:
    """The machine's state as JSON-able data."""
    parts = m.interval.parts
    candidate = m.debounce.candidate
    held = (0, 0, 0, 0)
    if candidate is not None:
        c = candidate.parts
        held = (c.good, c.reject, c.total, c.quality)
    gap = m.gap
    orders = m.orders
    downtime = m.downtime
    changeover = orders.changeover_parts
    return {
        "now": _finite(m.time.now),
        "acc_start": m.interval.start,
        "acc": [parts.good + held[0], parts.reject + held[1], parts.total + held[2]],
        "acc_q": max(parts.quality, held[3]),
        "carry": [m.counting.carry_good, m.counting.carry_reject],
        "counters": {name: c.to_json() for name, c in m.counters.items()},
        "gap": None
        if gap.start is None
        else {
            "start": gap.start,
            "end": gap.end,
            "kind": gap.kind,
            "segs": [list(stretch) for stretch in gap.stretches],
            "acc": [gap.parts.good, gap.parts.reject, gap.parts.total, gap.parts.quality],
        },
        "eb": m.state.bucket,
        "eb_since": _finite(m.state.since),
        "changeover": orders.changeover,
        "co": [changeover.good, changeover.reject, changeover.total],
        "downtime": None if downtime.open is None else downtime.open.to_json(),
        "chain_start": downtime.chain_start,
        "last_dt": list(downtime.last_id),
        "order": None if orders.active is None else orders.active.to_json(),
        "last_completed": orders.last_completed,
        "plc_order": orders.plc_order,
    }


def restore(m: Machine, data: dict[str, Any]) -> None:
    """Take up a snapshot; the time since it was taken becomes a gap (`restart`)."""
    now = data.get("now")
    if now is None:
        return  # saved before this machine saw anything: start afresh
    time = m.time
    time.started = True
    time.restored = True
    time.now = float(now)
    time.deadline = -INF
    m.shift.segment = m.shift.at(time.now)
    interval = m.interval
    interval.start = float(data["acc_start"])
    parts = interval.parts
    parts.good, parts.reject, parts.total = (int(x) for x in data["acc"])
    parts.quality = int(data["acc_q"])
    m.counting.carry_good, m.counting.carry_reject = (int(x) for x in data["carry"])
    for name, saved in data.get("counters", {}).items():
        counter = m.counters.get(name)
        if counter is not None:
            counter.load(saved)
    saved_gap = data.get("gap")
    if saved_gap is not None:
        gap = m.gap
        gap.start = float(saved_gap["start"])
        gap.end = None if saved_gap["end"] is None else float(saved_gap["end"])
        gap.kind = int(saved_gap["kind"])
        gap.stretches = [(float(t), o, s, i) for t, o, s, i in saved_gap["segs"]]
        g = gap.parts
        g.good, g.reject, g.total, g.quality = (int(x) for x in saved_gap["acc"])
    m.state.bucket = data.get("eb")
    since = data.get("eb_since")
    m.state.since = -INF if since is None else float(since)
    orders = m.orders
    orders.changeover = bool(data.get("changeover", False))
    co = orders.changeover_parts
    co.good, co.reject, co.total = (int(x) for x in data.get("co", (0, 0, 0)))
    downtime = m.downtime
    saved_dt = data.get("downtime")
    downtime.open = None if saved_dt is None else Downtime.from_json(saved_dt)
    downtime.announce_due = INF
    if downtime.open is not None and not downtime.open.announced:
        downtime.announce_due = downtime.open.start + downtime.min_state_s
    chain = data.get("chain_start")
    downtime.chain_start = None if chain is None else float(chain)
    ms, n = data.get("last_dt", (0, 0))
    downtime.last_id = (int(ms), int(n))
    saved_order = data.get("order")
    orders.active = None if saved_order is None else ActiveOrder.from_json(saved_order)
    if orders.active is not None:
        orders.book.started(m.id, orders.active.order_id)
    orders.last_completed = data.get("last_completed")
    orders.plc_order = data.get("plc_order")
    m.watch.cycle_time(m.ideal_cycle_time())
    interval.closes = interval.grid_after(time.now)
    m.link_up = False


def _finite(t: float) -> float | None:
    return t if math.isfinite(t) else None
