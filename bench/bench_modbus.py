"""Modbus collection cost, side by side: Node-RED + node-red-contrib-modbus and `mesgw run`.

For each workload (100 devices x 100 registers @ 1 s, 500 x 30 @ 1 s, 20 x 500 @ 100 ms;
`bench.modbus_workload`) one device farm is started (`bench.modbus_farm`: a pymodbus
server and port per device, in a process of its own) and one private Mosquitto. Then, in
the same run and alternating, window after window:

- Node-RED 4.1 with node-red-contrib-modbus 5.23 (tools/ensure-node-red installs them from
  npm into .cache/node-red on first use) polls every device and publishes each response's
  raw registers at QoS 1 (MQTT 5), as plants run it;
- the real `mesgw run` daemon, configured with one machine per device and every register
  mapped to a typed tag (62 per 100 registers: counters, a PackML state, float32 and int16
  values), polls the same farm through the rules and the outbox (SQLite, synchronous=full:
  an fsync per commit) to MQTT 5 at QoS 1.

Each client runs alone during its window (started before it, warmed up, stopped after), so
the farm's request counts are its own. CPU is utime + stime of the process (Node-RED: the
node process; the daemon: its Python process) as % of one core over the window, from
/proc/<pid>/stat; memory is the peak RSS (VmHWM). Requests per device cycle come from the
farm (the minimum is ceil(registers / 125)); "cycles" says how many polls each device got
against the number due, and the farm's fewest-served device shows whether one fell behind.
MQTT messages are counted by a subscriber on the same broker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.modbus_workload import WORKLOADS, Workload, gateway_toml, node_red_flow
from bench.table import render

ROOT = Path(__file__).resolve().parent.parent
WARMUP_S = float(os.environ.get("MESGW_BENCH_MODBUS_WARMUP_S", "8"))
WINDOW_S = float(os.environ.get("MESGW_BENCH_MODBUS_WINDOW_S", "30"))
ROUNDS = int(os.environ.get("MESGW_BENCH_MODBUS_ROUNDS", "2"))
RSS_TARGET_MB = 120
RATIO_TARGET = 0.5


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Farm:
    """The device farm process: ports, and the requests it received since the last ask."""

    def __init__(self, w: Workload) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.modbus_farm", str(w.devices), str(w.registers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.ports: list[int] = self._answer("ports")["ports"]

    def _answer(self, key: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the device farm ended: {self.proc.wait()}")
            answer: dict[str, Any] = json.loads(line)
            if key in answer:
                return answer
            print(f"bench: device farm: {line.strip()}", file=sys.stderr)  # not an answer

    def count(self) -> dict[str, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return self._answer("requests")

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Messages:
    """Counts MQTT messages per topic prefix on the bench broker (paho's own thread)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-counter")
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("node-red/#", 0), ("mesgw/#", 0)])
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        root = message.topic.split("/", 1)[0]
        with self._lock:
            self.counts[root] = self.counts.get(root, 0) + 1

    def get(self, root: str) -> int:
        with self._lock:
            return self.counts.get(root, 0)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def node_red_dir() -> Path:
    """Where node-red and node-red-contrib-modbus are installed (installing on first use)."""
    out = subprocess.run(
        [str(ROOT / "tools" / "ensure-node-red")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def node_red_version(install: Path) -> str:
    versions = []
    for package in ("node-red", "node-red-contrib-modbus"):
        meta = json.loads((install / "node_modules" / package / "package.json").read_text())
        versions.append(f"{package} {meta['version']}")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return ", ".join(versions) + f", node {node}"


@dataclass
class Client:
    """One measured client: how to start it and stop it."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    topic_root: str
    windows: list[dict[str, float]] = field(default_factory=list)


def _start_node_red(install: Path, work: Path, w: Workload, ports: list[int], mqtt: int) -> Any:
    user = work / "node-red"
    shutil.rmtree(user, ignore_errors=True)
    user.mkdir()
    (user / "flows.json").write_text(node_red_flow(w, ports, mqtt))
    (user / "settings.js").write_text(
        "module.exports = {\n"
        "  flowFile: 'flows.json',\n"
        "  credentialSecret: false,\n"
        "  httpAdminRoot: false,\n"
        "  httpNodeRoot: false,\n"
        "  uiHost: '127.0.0.1',\n"
        "  uiPort: 0,\n"
        "  logging: { console: { level: 'warn', metrics: false, audit: false } },\n"
        "  telemetry: { enabled: false },\n"
        "  externalModules: { autoInstall: false, palette: { allowInstall: false } },\n"
        "};\n"
    )
    red = install / "node_modules" / "node-red" / "red.js"
    return subprocess.Popen(
        ["node", str(red), "--userDir", str(user), "--settings", str(user / "settings.js")],
        cwd=user,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "node-red.log", "ab"),
    )


def _start_gateway(work: Path, w: Workload, ports: list[int], mqtt: int) -> Any:
    gw = work / "gateway"
    shutil.rmtree(gw, ignore_errors=True)
    gw.mkdir()
    config = gw / "gateway.toml"
    config.write_text(gateway_toml(w, ports, mqtt, gw))
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "gateway.log", "ab"),
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def _window(client: Client, farm: Farm, messages: Messages, w: Workload) -> dict[str, float]:
    proc = client.start()
    try:
        time.sleep(WARMUP_S)
        if proc.poll() is not None:
            raise RuntimeError(f"{client.name} ended during warm-up: {proc.returncode}")
        farm.count()
        sent = messages.get(client.topic_root)
        t0, c0 = time.monotonic(), _cpu_s(proc.pid)
        time.sleep(WINDOW_S)
        t1, c1 = time.monotonic(), _cpu_s(proc.pid)
        served = farm.count()
        sent = messages.get(client.topic_root) - sent
        rss = _peak_rss_mb(proc.pid)
    finally:
        _stop(proc)
    elapsed = t1 - t0
    due = elapsed / w.interval_s  # polls due per device in the window
    return {
        "cpu_pct": 100 * (c1 - c0) / elapsed,
        "rss_peak_mb": rss,
        "requests_per_cycle": served["requests"] / (w.devices * due),
        "fewest_polls": served["fewest"] / w.minimum_requests,
        "due_polls": due,
        "messages_per_s": sent / elapsed,
    }


def measure(w: Workload, install: Path | None) -> dict[str, Any]:
    """Both clients on one farm and broker, alternating for ROUNDS windows each."""
    from gateway.testing import Broker

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mesgw-bench-")))
        farm = Farm(w)
        stack.callback(farm.stop)
        broker = Broker(work / "broker")
        (work / "broker").mkdir()
        broker.start()
        stack.callback(broker.stop)
        messages = Messages(broker.port)
        stack.callback(messages.stop)
        clients = []
        if install is not None:
            clients.append(
                Client(
                    "node-red",
                    lambda: _start_node_red(install, work, w, farm.ports, broker.port),
                    "node-red",
                )
            )
        clients.append(
            Client("mesgw", lambda: _start_gateway(work, w, farm.ports, broker.port), "mesgw")
        )
        for _ in range(ROUNDS):
            for client in clients:
                client.windows.append(_window(client, farm, messages, w))
                if os.environ.get("MESGW_BENCH_VERBOSE"):
                    print(f"{w.name} {client.name}: {client.windows[-1]}", file=sys.stderr)
        return {c.name: c.windows for c in clients}


def _span(values: list[float], fmt: str) -> str:
    """The lowest and highest of the windows' figures ("3.6-3.9"), or one if they agree."""
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}-{high}"


def rows_for(w: Workload, m: dict[str, list[dict[str, float]]]) -> list[dict[str, object]]:
    def row(what: str, value: object, unit: str, target: str) -> dict[str, object]:
        return {"bench": f"{w.name}: {what}", "value": value, "unit": unit, "target": target}

    gw = m["mesgw"]
    nr = m.get("node-red")
    rows = []
    gw_cpu = [x["cpu_pct"] for x in gw]
    if nr is not None:
        nr_cpu = [x["cpu_pct"] for x in nr]
        rows.append(row("Node-RED CPU", _span(nr_cpu, "{:.1f}"), "% core", "(baseline)"))
    rows.append(row("mesgw run CPU", _span(gw_cpu, "{:.1f}"), "% core", ""))
    if nr is not None:
        # Each window of the daemon against the Node-RED window beside it (same round).
        ratios = [g / n for g, n in zip(gw_cpu, nr_cpu, strict=True) if n > 0]
        rows.append(row("CPU ratio mesgw / Node-RED", _span(ratios, "{:.2f}"), "", "<= 0.5"))
        rows.append(
            row(
                "Node-RED peak RSS",
                max(x["rss_peak_mb"] for x in nr),
                "MB",
                "(baseline)",
            )
        )
    rows.append(
        row("mesgw run peak RSS", max(x["rss_peak_mb"] for x in gw), "MB", f"<= {RSS_TARGET_MB}")
    )
    for name, windows in (("Node-RED", nr), ("mesgw run", gw)):
        if windows is None:
            continue
        per_cycle = _span([x["requests_per_cycle"] for x in windows], "{:.2f}")
        slowest = min(windows, key=lambda x: x["fewest_polls"] - x["due_polls"])
        rows.append(
            row(
                f"{name} requests per device cycle",
                per_cycle,
                "requests",
                f"{w.minimum_requests} (minimum)",
            )
        )
        rows.append(
            row(
                f"{name} polls of the slowest device",
                f"{slowest['fewest_polls']:.0f} of {slowest['due_polls']:.0f} due",
                "",
                "all (no cycle lost; ±1 at the window's edges)",
            )
        )
        rows.append(
            row(
                f"{name} MQTT messages",
                _span([x["messages_per_s"] for x in windows], "{:,.0f}"),
                "/s",
                "",
            )
        )
    return rows


def run(only: str | None = None) -> list[dict[str, object]]:
    try:
        install: Path | None = node_red_dir()
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"bench: Node-RED not available, measuring mesgw alone: {err}", file=sys.stderr)
        install = None
    rows: list[dict[str, object]] = []
    if install is not None:
        rows.append(
            {
                "bench": "modbus: Node-RED",
                "value": node_red_version(install),
                "unit": "",
                "target": "",
            }
        )
    rows.append(
        {
            "bench": "modbus: windows",
            "value": f"{ROUNDS} x {WINDOW_S:g} s each, alternating, after {WARMUP_S:g} s warm-up",
            "unit": "",
            "target": "",
        }
    )
    for w in WORKLOADS:
        if only is not None and only != w.key:
            continue
        rows += rows_for(w, measure(w, install))
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_modbus")
    parser.add_argument("--workload", help="one of " + ", ".join(w.key for w in WORKLOADS))
    args = parser.parse_args(argv)
    from gateway.logging import configure

    configure("warning")
    print(f"on {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(render(run(args.workload)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
