"""End to end with the simulated line: PLC truth → connectors → rules → MQTT → PostgreSQL.

A scripted scenario runs on a simulated line (one machine over OPC UA, one over Modbus TCP,
real servers); `mesgw run` (a real process) reads it, applies the rules, publishes, and
records into PostgreSQL. The database must hold exactly the simulator's parts per machine
and order, every stop as a downtime with the PLC's reason and durations within 1 s, and a
maintenance subscriber (`mosquitto_sub`) must see each downtime start and end. A busy
process loads the box meanwhile, and the sample log the gateway recorded must replay to the
very events it stored, ids and timestamps included.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors.simulator.config import SimConfig
from connectors.simulator.gateway_config import render_toml
from connectors.simulator.line import SimulatedLine
from connectors.simulator.scenario import parse_scenario
from gateway.config import load_config
from gateway.testing import Broker

# Real processes started from the test: short blocking calls are the point.
# ruff: noqa: ASYNC220, ASYNC221
pytestmark = pytest.mark.integration

SIM = {
    "seed": 5,
    "opcua": {"host": "127.0.0.1", "port": 0, "namespace": "urn:mesgw:sim"},
    "modbus": {"host": "127.0.0.1", "port": 0},
    "machines": [
        {
            "id": "filler-1",
            "area": "packaging",
            "line": "line-1",
            "protocol": "opcua",
            "cycle_time_s": 0.05,
            "reject_ratio": 0,
            "states": "packtags",
            "order": "WO-1",
            "counters": {"good": {"width": 32}, "reject": {"width": 32}},
        },
        {
            "id": "labeler-1",
            "area": "packaging",
            "line": "line-1",
            "protocol": "modbus",
            "unit": 1,
            "byte_order": "CDAB",
            "cycle_time_s": 0.05,
            "reject_ratio": 0,
            "states": "packtags",
            "order": "WO-1",
            # 16-bit counters just below the wrap: the first run rolls them over.
            "counters": {
                "good": {"width": 16, "initial": 65500},
                "reject": {"width": 16, "initial": 65530},
            },
        },
    ],
}

# A pause ("wait": running, nothing made) after an order change lets the new order number
# reach the gateway before the next part, as on a real line where an order starts with setup.
SCENARIO = {
    "end": "idle",
    "steps": {
        "filler-1": [
            {"do": "run", "parts": 137, "rejects": 4},
            {"do": "fault", "reason": 42, "seconds": 4},
            {"do": "run", "parts": 60, "rejects": 2},
            {"do": "order", "order": "WO-2"},
            {"do": "wait", "seconds": 1.5},
            {"do": "run", "parts": 50, "rejects": 1},
        ],
        "labeler-1": [
            {"do": "run", "parts": 100, "rejects": 10},
            {"do": "stop", "state": "suspended", "reason": 201, "seconds": 3},
            {"do": "reset"},
            {"do": "wait", "seconds": 1.5},
            {"do": "run", "parts": 40, "rejects": 2},
            {"do": "fault", "reason": 7, "seconds": 3},
            {"do": "run", "parts": 20},
        ],
    },
}


def gateway_toml(line: SimulatedLine, broker: Broker, prefix: str, dsn: str, tmp: Path) -> str:
    machines = line.gateway_machines()
    for machine in machines:
        machine["down_after_s"] = 5  # scripted pauses are not stops
        connector = machine["connector"]
        if connector["type"] == "modbus":
            connector["poll_interval_s"] = 0.1
        else:
            connector["publishing_interval_s"] = 0.1
            connector["sampling_interval_s"] = 0.05
            connector["queue_size"] = 10
    return f"""
[gateway]
id = "gw-e2e"
site = "plant"
status_interval_s = 1
[mqtt]
port = {broker.port}
prefix = "{prefix}"
reconnect_min_s = 0.05
reconnect_max_s = 0.5
[api]
port = 0
[outbox]
path = "{tmp / "outbox.db"}"
synchronous = "normal"
[store]
dsn = "{dsn}"
[recorder]
client_id = "rec-e2e"
in_process = true
batch_wait_ms = 10
[samples]
record = true
directory = "{tmp / "samples"}"
[rules]
count_interval_s = 1
min_state_s = 0.5
micro_stop_s = 1
[[reasons]]
code = "42"
text = "bottle jam"
category = "jam"
[[reasons]]
code = "7"
text = "label web break"
category = "material"
[[reasons]]
code = "201"
text = "starved"
category = "upstream"
""" + render_toml(machines)


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await asyncio.wait_for(predicate(), timeout):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_scripted_line_lands_in_the_database_exactly(
    broker: Broker, prefix: str, pg_dsn: str, tmp_path: Path
) -> None:
    config = SimConfig.model_validate(SIM)
    scenario = parse_scenario(SCENARIO, config, "<test>")
    async with SimulatedLine(config) as line:
        path = tmp_path / "gateway.toml"
        path.write_text(gateway_toml(line, broker, prefix, pg_dsn, tmp_path))
        load_config(path)  # a config problem fails here, with its message
        migrate = subprocess.run(
            [sys.executable, "-m", "gateway", "db", "migrate", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert migrate.returncode == 0, migrate.stderr
        downtime_topic = f"{prefix}/+/+/+/+/downtime"
        maintenance = subprocess.Popen(
            ["mosquitto_sub", "-p", str(broker.port), "-q", "1", "-v", "-t", downtime_topic],
            stdout=subprocess.PIPE,
            text=True,
        )
        env = {**os.environ, "MESGW_LOGGING__FORMAT": "json"}
        # A loaded box: the ticks overtake samples still on their way, which must not change
        # how events are dated (live = replay).
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        log_path = tmp_path / "gateway.log"
        with log_path.open("w") as log_file:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
        db = await asyncpg.connect(pg_dsn)
        try:

            async def orders_seen() -> bool:
                found = await db.fetchval(
                    "select count(distinct machine) from events where type = 'order.started'"
                )
                return bool(found == 2)

            # The gateway has read both machines (baselines set) once their orders are in.
            await wait_for(orders_seen, 60, "both machines' first orders")
            await line.run_scenario(scenario)
            truth = line.truth
            expected = {
                (m, order): (made.good, made.reject, made.total)
                for m, t in truth.machines.items()
                for order, made in t.orders.items()
                if made.total
            }

            async def counted() -> dict[tuple[str, str], tuple[int, int, int]]:
                rows = await db.fetch(
                    "select machine, order_id, sum(good) g, sum(reject) r, sum(total) t"
                    " from counts group by 1, 2 having sum(total) > 0"
                )
                return {(r["machine"], r["order_id"]): (r["g"], r["r"], r["t"]) for r in rows}

            async def all_counted() -> bool:
                return await counted() == expected

            try:
                await wait_for(all_counted, 30, "the counts to equal the simulator's truth")
            except AssertionError:
                assert await counted() == expected  # shows the difference
            # Downtimes: every fault (PackML Aborted: `down`), and the changeover from the
            # order change to the next order's first good part. The labeler's Suspended stop
            # (starved) is `idle`: a performance loss, not a downtime of its own.
            faults = {
                m: [i for i in t.intervals if i.kind == "faulted"]
                for m, t in truth.machines.items()
            }

            async def downtimes_closed() -> bool:
                n = await db.fetchval("select count(*) from downtimes where end_ts is not null")
                return bool(n >= 3)

            await wait_for(downtimes_closed, 20, "the downtimes to end")
            rows = await db.fetch(
                "select downtime_id, machine, start_ts, end_ts, duration_s, reason_code,"
                " reason_text, category, loss from downtimes order by machine, start_ts"
            )
        finally:
            burner.kill()
            burner.wait()
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0, log_path.read_text()[-3000:]
            stored = await db.fetch(
                "select type, ts, machine, order_id, shift_id, data::text as data from events"
            )
            await db.close()
            await asyncio.sleep(0.5)
            maintenance.terminate()
            published, _ = maintenance.communicate(timeout=10)
            # After an orderly stop nobody watches the machines: their retained state says so.
            retained = subprocess.run(
                [
                    *("mosquitto_sub", "-p", str(broker.port), "-t", f"{prefix}/+/+/+/+/state"),
                    *("--retained-only", "-C", "2", "-W", "5"),
                ],
                capture_output=True,
                text=True,
                timeout=10,
            )

    states = [json.loads(line)["data"] for line in retained.stdout.splitlines()]
    assert [(d["bucket"], d["reason"]) for d in states] == [("unknown", "gateway stopped")] * 2

    by_machine: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        by_machine.setdefault(row["machine"], []).append(row)
    filler, labeler = by_machine["filler-1"], by_machine["labeler-1"]
    assert len(filler) == 2 and len(labeler) == 2, rows
    # The labeler starved (PackML Suspended, reason 201): a stop of its own, charged to
    # performance (not the labeler's availability), then its fault.
    starved, labeler_fault = labeler
    suspended = next(i for i in truth.machines["labeler-1"].intervals if i.reason == 201)
    assert (starved["category"], starved["loss"], starved["reason_code"]) == (
        "starved",
        "performance",
        "201",
    )
    assert abs((starved["start_ts"] - suspended.start).total_seconds()) < 1.0, starved
    for row, stop in ((filler[0], faults["filler-1"][0]), (labeler_fault, faults["labeler-1"][0])):
        assert stop.end is not None and stop.duration_s is not None
        assert abs((row["start_ts"] - stop.start).total_seconds()) < 1.0, (row, stop)
        assert abs((row["end_ts"] - stop.end).total_seconds()) < 1.0, (row, stop)
        assert abs(row["duration_s"] - stop.duration_s) < 1.0, (row, stop)
        assert row["reason_code"] == str(stop.reason)
    assert filler[0]["reason_text"] == "bottle jam"
    assert labeler_fault["reason_text"] == "label web break"
    changeover = filler[1]
    # From the order change (after the fault and 60 parts at 0.05 s) through the scripted
    # 1.5 s pause to the first part of WO-2.
    fault_end = faults["filler-1"][0].end
    assert fault_end is not None
    order_change = fault_end + timedelta(seconds=60 * 0.05)
    assert abs((changeover["start_ts"] - order_change).total_seconds()) < 1.0, changeover
    assert abs(changeover["duration_s"] - 1.5) < 1.0, changeover
    assert changeover["reason_code"] is None  # unassigned: the clerk gives it a reason

    # Maintenance saw every downtime start and end on the broker.
    seen: dict[str, set[str]] = {}
    for line_text in published.splitlines():
        _, _, payload = line_text.partition(" ")
        event = json.loads(payload)
        seen.setdefault(event["data"]["downtime_id"], set()).add(event["type"])
    assert set(seen) == {r["downtime_id"] for r in rows}
    for kinds in seen.values():
        assert {"downtime.started", "downtime.ended"} <= kinds

    # The raw-sample log replays to the same totals without touching the store, and to the
    # same events: every one the recorder stored before the stop, ids included.
    logs = sorted((tmp_path / "samples").glob("samples-*.jsonl"))
    assert logs
    events_path = tmp_path / "replayed.jsonl"
    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "replay",
            *map(str, logs),
            "--config",
            str(path),
            "--json",
            "--events",
            str(events_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replayed.returncode == 0, replayed.stderr
    summary = json.loads(replayed.stdout)
    parts = {
        (p["machine"], p["order"]): (p["good"], p["reject"], p["total"])
        for p in summary["parts"]
        if p["total"]
    }
    assert parts == expected
    stop = min(
        json.loads(line)["ts"]
        for log in logs
        for line in log.read_text().splitlines()
        if '"gateway":"stop"' in line
    )

    def key(kind: str, ts: str, machine: str, order: Any, shift: Any, data: Any) -> str:
        return json.dumps([kind, ts, machine, order, shift, data], sort_keys=True)

    live = sorted(
        key(
            r["type"],
            r["ts"].isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            r["machine"],
            r["order_id"],
            r["shift_id"],
            json.loads(r["data"]),
        )
        for r in stored
    )
    again = sorted(
        key(e["type"], e["ts"], e["machine"], e["order"], e["shift"], e["data"])
        for e in map(json.loads, events_path.read_text().splitlines())
    )
    before_stop = [k for k in again if json.loads(k)[1] < stop]
    assert [k for k in live if json.loads(k)[1] < stop] == before_stop
