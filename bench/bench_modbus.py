"""Modbus polling cost beside what plants run today (Node-RED 4.1 + node-red-contrib-modbus).

Three workloads, as measured for Node-RED on this machine (polling the same registers and
publishing them raw, undecoded, to MQTT): 100 devices x 100 registers at 1 s, 500 x 30 at
1 s, 20 x 500 at 100 ms. Here the gateway side polls them with `ModbusDevice` tasks,
decodes typed tags (uint32 counters, float32 values, int16 states: a 5-register pattern)
into samples and hands each cycle's batch to a bounded queue drained by a consumer task, as
the daemon's pipeline does.

Each simulated device is its own pymodbus TCP server on its own port, so each device is its
own TCP connection, as each PLC is in a plant and as each Node-RED Modbus client was; the
servers run in a process of their own. The gateway side runs in another process, and only
that process is measured: CPU from /proc/<pid>/stat (utime + stime) over a steady window
after a warm-up, memory from /proc/<pid>/status (VmHWM, the peak RSS). Requests per cycle
are counted by the servers and compared with the minimum, ceil(registers / 125) per device.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.table import render

WARMUP_S = float(os.environ.get("MESGW_BENCH_MODBUS_WARMUP_S", "5"))
WINDOW_S = float(os.environ.get("MESGW_BENCH_MODBUS_WINDOW_S", "10"))
PATTERN = 5  # registers: uint32 counter, float32 value, int16 state
RSS_TARGET_MB = 150


@dataclass(frozen=True)
class Workload:
    devices: int
    registers: int
    interval_s: float
    node_red_cpu: float  # % of one core, measured for Node-RED on this machine

    @property
    def name(self) -> str:
        every = (
            f"{self.interval_s:g} s" if self.interval_s >= 1 else f"{self.interval_s * 1000:g} ms"
        )
        return f"modbus {self.devices} dev x {self.registers} regs @{every}"

    @property
    def minimum_requests(self) -> int:
        """Requests per device and cycle no client can go below (125 registers a read)."""
        return math.ceil(self.registers / 125)


WORKLOADS = (
    Workload(100, 100, 1.0, 4.5),
    Workload(500, 30, 1.0, 15.6),
    Workload(20, 500, 0.1, 28.0),
)


def _tags(registers: int) -> dict[str, Any]:
    from connectors.modbus.testing import tag_config

    tags = {}
    for at in range(0, registers - PATTERN + 1, PATTERN):
        tags[f"count{at}"] = tag_config(f"hr:{at}", type="uint32")
        tags[f"value{at}"] = tag_config(f"hr:{at + 2}", type="float32")
        tags[f"state{at}"] = tag_config(f"hr:{at + 4}", type="int16")
    return tags


# -- the simulated devices (their own process) ---------------------------------------------


async def _simulate(devices: int, registers: int) -> None:
    from connectors.modbus.codec import encode
    from connectors.modbus.testing import ModbusSimulator, Unit

    rng = random.Random(7)
    sims = []
    for _ in range(devices):
        sim = ModbusSimulator({1: Unit(registers=registers, bits=16)})
        await sim.start()
        values: list[int] = []
        for _at in range(0, registers, PATTERN):
            values += encode(rng.randrange(2**32), "uint32")
            values += encode(rng.uniform(-1000, 1000), "float32")
            values += encode(rng.randrange(-100, 100), "int16")
        await sim.set_registers("hr", 0, values[:registers])
        sims.append(sim)
    print(json.dumps({"ports": [s.port for s in sims]}), flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "count":
            print(json.dumps({"requests": sum(s.requests() for s in sims)}), flush=True)
    for sim in sims:
        await sim.stop()


# -- the gateway side (its own process, the one measured) ---------------------------------


async def _gateway(ports: list[int], registers: int, interval_s: float) -> None:
    from connectors.modbus.device import ModbusDevice
    from connectors.modbus.testing import connector_for
    from connectors.sample import Reading, Sample

    tags = _tags(registers)
    queue: asyncio.Queue[list[Reading]] = asyncio.Queue(10_000)
    counts = {"samples": 0, "bad": 0}

    async def consume() -> None:
        while True:
            batch = await queue.get()
            counts["samples"] += len(batch)
            counts["bad"] += sum(1 for r in batch if isinstance(r, Sample) and r.quality != "good")

    async def emit(batch: Any) -> None:
        await queue.put(batch)

    devices = [
        ModbusDevice(
            f"m{i}",
            connector_for(port=port, poll_interval_s=interval_s, timeout_s=2.0),
            tags,
        )
        for i, port in enumerate(ports)
    ]
    tasks = [asyncio.create_task(consume(), name="consumer")]
    tasks += [asyncio.create_task(d.run(emit), name=f"modbus:{d.machine}") for d in devices]
    print(json.dumps({"tags": len(tags)}), flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "stats":
            c = [d.counters for d in devices]
            stats = {
                "requests": sum(x.requests for x in c),
                "cycles": sum(x.cycles for x in c),
                "late": sum(x.late_cycles for x in c),
                "errors": sum(x.errors for x in c),
                "planned": sum(sum(d.requests_per_cycle.values()) for d in devices),
                **counts,
            }
            print(json.dumps(stats), flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- the orchestration ---------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory_mb(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(rest.split()[0]) / 1024
    return out


class _Process:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_modbus", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, line: str | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"bench process {self.proc.args} ended: {self.proc.wait()}")
        result: dict[str, Any] = json.loads(answer)
        return result

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(w: Workload) -> dict[str, float]:
    sims = _Process("simulate", str(w.devices), str(w.registers))
    try:
        ports = sims.ask()["ports"]
        gw = _Process("gateway", str(w.registers), str(w.interval_s), *map(str, ports))
        try:
            tags = gw.ask()["tags"]
            time.sleep(WARMUP_S)
            pid = gw.proc.pid
            before = (time.monotonic(), _cpu_s(pid), gw.ask("stats"), sims.ask("count"))
            time.sleep(WINDOW_S)
            after = (time.monotonic(), _cpu_s(pid), gw.ask("stats"), sims.ask("count"))
            memory = _memory_mb(pid)
        finally:
            gw.stop()
    finally:
        sims.stop()
    elapsed = after[0] - before[0]
    stats = {k: after[2][k] - before[2][k] for k in ("requests", "cycles", "late", "errors")}
    stats |= {k: after[2][k] - before[2][k] for k in ("samples", "bad")}
    received = after[3]["requests"] - before[3]["requests"]
    cycles = max(stats["cycles"], 1)
    return {
        "cpu_pct": 100 * (after[1] - before[1]) / elapsed,
        "rss_peak_mb": memory["VmHWM"],
        "rss_mb": memory["VmRSS"],
        "requests_per_cycle": received / cycles,
        "client_requests_per_cycle": stats["requests"] / cycles,
        "planned_per_cycle": after[2]["planned"] / w.devices,
        "samples_per_s": stats["samples"] / elapsed,
        "bad": stats["bad"],
        "late": stats["late"],
        "errors": stats["errors"],
        "cycles_per_s": stats["cycles"] / elapsed,
        "tags": tags,
    }


def rows_for(w: Workload, m: dict[str, float]) -> list[dict[str, object]]:
    expected_cycles = w.devices / w.interval_s
    cpu_target = f"<= {w.node_red_cpu / 2:g} (Node-RED {w.node_red_cpu:g})"

    def row(what: str, value: object, unit: str, target: str) -> dict[str, object]:
        return {"bench": f"{w.name}: {what}", "value": value, "unit": unit, "target": target}

    rows = [row("gateway CPU", m["cpu_pct"], "% core", cpu_target)]
    if m["cycles_per_s"] < 0.99 * expected_cycles:
        # On a busy machine some cycles were skipped (counted below): what all would cost.
        scaled = m["cpu_pct"] * expected_cycles / max(m["cycles_per_s"], 1e-9)
        rows.append(row("gateway CPU scaled to every cycle", scaled, "% core", cpu_target))
    skipped = f"{m['cycles_per_s']:,.1f}/s, {m['late']:.0f} skipped, {m['bad']:.0f} bad"
    rows += [
        row("gateway peak RSS", m["rss_peak_mb"], "MB", f"< {RSS_TARGET_MB} (Node-RED 160-320)"),
        row(
            "requests per device cycle",
            m["requests_per_cycle"],
            "requests",
            f"{w.minimum_requests} (minimum)",
        ),
        row(
            "typed samples decoded",
            m["samples_per_s"],
            "/s",
            f"{m['tags'] * expected_cycles:,.0f} expected, 0 bad",
        ),
        row("cycles run", skipped, "", f"{expected_cycles:,.0f}/s"),
    ]
    return rows


def run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for w in WORKLOADS:
        m = measure(w)
        if os.environ.get("MESGW_BENCH_VERBOSE"):
            print(f"{w.name}: {m}", file=sys.stderr)
        rows += rows_for(w, m)
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_modbus")
    sub = parser.add_subparsers(dest="role")
    sim = sub.add_parser("simulate")
    sim.add_argument("devices", type=int)
    sim.add_argument("registers", type=int)
    gw = sub.add_parser("gateway")
    gw.add_argument("registers", type=int)
    gw.add_argument("interval", type=float)
    gw.add_argument("ports", type=int, nargs="+")
    args = parser.parse_args(argv)
    from gateway.logging import configure

    if args.role == "simulate":
        configure("error")
        asyncio.run(_simulate(args.devices, args.registers))
    elif args.role == "gateway":
        configure("warning")
        asyncio.run(_gateway(args.ports, args.registers, args.interval))
    else:
        configure("warning")
        print(render(run()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
