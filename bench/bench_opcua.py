"""OPC UA: 10,000 monitored items changing at 1 Hz, through `mesgw run` and beside its floor.

An asyncua server updates 10,000 variables (each once a second, spread over 10 ms ticks,
source timestamp = time of the write) in a process of its own. On the same server, in the
same run, one after the other:

- the real `mesgw run` daemon, one machine with the 10,000 variables as tags, subscribed
  (connector → rules → outbox → MQTT, with the sample log on: it writes every changed value,
  which is how the bench knows that every change arrived: the logged samples whose source
  timestamps fall in the window against the writes the server reports for it);
- the connector alone (`OpcUaDevice` with a consumer that only measures latencies);
- bare asyncua, a publish callback that only counts: the floor any asyncua client pays.

CPU time and RSS of each receiving process come from /proc.
"""

from __future__ import annotations

import array
import asyncio
import gc
import itertools
import json
import math
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.table import render
from gateway.testing import Broker, free_port, wait_port

ITEMS = 10_000
WARMUP_S = 4.0
MEASURE_S = 12.0
TICK_S = 0.01
PUBLISHING_INTERVAL_S = 0.02


# --- the server process ------------------------------------------------------------------


async def serve(port: int, items: int) -> None:
    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:bench:opcua")
    ids = [ua.NodeId(f"v{i}", idx) for i in range(items)]
    # 100 variables per folder: asyncua checks a parent's references one by one on every add
    for start in range(0, items, 100):
        folder = await server.nodes.objects.add_folder(idx, f"Bench{start // 100}")
        await server.iserver.isession.add_nodes(
            [_variable(ua, folder.nodeid, node) for node in ids[start : start + 100]]
        )
    await server.start()
    # The simulator stands in for a PLC: its own collector pauses must not count as latency.
    gc.freeze()
    print("ready", flush=True)
    per_tick = max(1, round(items * TICK_S))
    writes, value, cursor, lag = 0, 0.0, 0, 0.0
    started = next_tick = report = time.monotonic()
    while True:
        now = datetime.now(UTC)
        value += 1.0
        for _ in range(per_tick):
            dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double), SourceTimestamp=now)
            dv.ServerTimestamp = now
            await server.write_attribute_value(ids[cursor], dv)
            cursor = (cursor + 1) % items
        writes += per_tick
        next_tick += TICK_S
        delay = next_tick - time.monotonic()
        if delay < -1.0:
            next_tick = time.monotonic()  # fell behind by a second: do not try to catch up
        await asyncio.sleep(max(0.0, delay))
        lag = max(lag, time.monotonic() - next_tick)  # how late the loop woke: a busy server
        if time.monotonic() - report >= 1.0:
            report = time.monotonic()
            print(f"writes {writes} {report - started:.3f} {lag * 1000:.1f}", flush=True)
            lag = 0.0


def _variable(ua: Any, parent: Any, node: Any) -> Any:
    attrs = ua.VariableAttributes(
        DisplayName=ua.LocalizedText(node.Identifier),
        DataType=ua.NodeId(ua.ObjectIds.Double),
        Value=ua.Variant(0.0, ua.VariantType.Double),
        ValueRank=ua.ValueRank.Scalar,
        AccessLevel=ua.AccessLevel.CurrentRead.mask,
        UserAccessLevel=ua.AccessLevel.CurrentRead.mask,
    )
    return ua.AddNodesItem(
        ParentNodeId=parent,
        ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
        RequestedNewNodeId=node,
        BrowseName=ua.QualifiedName(node.Identifier, node.NamespaceIndex),
        NodeClass=ua.NodeClass.Variable,
        NodeAttributes=attrs,
        TypeDefinition=ua.NodeId(ua.ObjectIds.BaseDataVariableType),
    )


# --- the gateway process -----------------------------------------------------------------


async def gateway(endpoint: str, items: int, warmup_s: float, measure_s: float) -> None:
    from connectors.opcua import device as device_module
    from connectors.opcua.device import OpcUaDevice
    from connectors.sample import Reading, Sample
    from gateway.config import OpcUaConnector, TagConfig

    arrivals: deque[float] = deque()
    original = device_module._Feed.on_publish

    async def timed(self: Any, result: Any) -> None:
        # bench instrumentation: when the notification message reached our callback
        if result.NotificationMessage.NotificationData:
            arrivals.append(time.time())
        await original(self, result)

    device_module._Feed.on_publish = timed  # type: ignore[method-assign]

    cfg = OpcUaConnector(
        type="opcua",
        endpoint=endpoint,
        security_policy="None",
        publishing_interval_s=PUBLISHING_INTERVAL_S,
        sampling_interval_s=0,
        timeout_s=30,
    )
    address = "nsu=urn:bench:opcua;s=v{}"
    tags = {f"t{i}": TagConfig(role="value", address=address.format(i)) for i in range(items)}
    pauses = array.array("d")
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif state == "measuring":
            pauses.append(time.perf_counter() - gc_started[0])

    gc.callbacks.append(on_gc)
    source_lat = array.array("d")
    arrival_lat = array.array("d")
    counted = 0
    state = "starting"
    phase_end = 0.0

    async def consume(readings: Sequence[Reading]) -> None:
        nonlocal counted, state, phase_end
        now = time.time()
        arrived = arrivals.popleft() if arrivals else now
        samples = [r for r in readings if isinstance(r, Sample) and r.quality == "good"]
        if state == "measuring":
            append = source_lat.append
            for s in samples:
                append(now - s.ts.timestamp())
            arrival_lat.append(now - arrived)
            counted += len(samples)
        elif state == "starting" and samples:
            state, phase_end = "warming", time.monotonic() + warmup_s
        if state == "warming" and time.monotonic() >= phase_end:
            state, phase_end = "measuring", time.monotonic() + measure_s
            print("measure-start", flush=True)

    gc.freeze()  # as `mesgw run` does once started: the start-up objects leave the collector
    task = asyncio.create_task(OpcUaDevice("bench", cfg, tags).run(consume), name="bench-device")
    while state != "measuring" or time.monotonic() < phase_end:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    print("measure-end", flush=True)
    task.cancel()
    figures = _figures(source_lat, arrival_lat, counted, measure_s)
    figures["gc_max_ms"] = max(pauses, default=0.0) * 1000
    print(json.dumps(figures), flush=True)


async def raw_asyncua(endpoint: str, items: int, warmup_s: float, measure_s: float) -> None:
    """The floor: asyncua's own receive path with a callback that only counts items."""
    from asyncua import Client, ua

    received = 0

    def on_publish(result: Any) -> None:
        nonlocal received
        for notification in result.NotificationMessage.NotificationData:
            if isinstance(notification, ua.DataChangeNotification):
                received += len(notification.MonitoredItems)

    client = Client(endpoint, timeout=30)
    await client.connect()
    ns = await client.get_namespace_index("urn:bench:opcua")
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=PUBLISHING_INTERVAL_S * 1000,
        RequestedLifetimeCount=3000,
        RequestedMaxKeepAliveCount=500,
        MaxNotificationsPerPublish=0,
        PublishingEnabled=True,
    )
    sub = await client.uaclient.create_subscription(params, on_publish)
    requests = [
        ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=ua.NodeId(f"v{i}", ns), AttributeId=13),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(ClientHandle=i + 1, QueueSize=1),
        )
        for i in range(items)
    ]
    for start in range(0, items, 1000):
        await client.uaclient.create_monitored_items(
            ua.CreateMonitoredItemsParameters(
                SubscriptionId=sub.SubscriptionId, ItemsToCreate=requests[start : start + 1000]
            )
        )
    await asyncio.sleep(warmup_s)
    before = received
    print("measure-start", flush=True)
    await asyncio.sleep(measure_s)
    print("measure-end", flush=True)
    print(json.dumps({"samples_per_s": (received - before) / measure_s}), flush=True)
    await client.disconnect()


def _figures(
    source: array.array[float], arrival: array.array[float], counted: int, seconds: float
) -> dict[str, float]:
    s, a = sorted(source), sorted(arrival)
    if not s:
        return {"samples_per_s": 0.0}
    return {
        "samples_per_s": counted / seconds,
        "source_p50_ms": statistics.median(s) * 1000,
        "source_p99_ms": s[int(len(s) * 0.99) - 1] * 1000,
        "arrival_p50_ms": statistics.median(a) * 1000,
        "arrival_p99_ms": a[int(len(a) * 0.99) - 1] * 1000,
    }


# --- the measuring process ---------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int, key: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no output from {proc.args!r} in {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.args!r} exited with {proc.wait()}")
    return line.strip()


def _drain(proc: subprocess.Popen[str]) -> None:
    """Skip what a process printed before now."""
    while select.select([proc.stdout], [], [], 0)[0]:
        _line(proc, 1)


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.bench_opcua", *args],
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def _measured(mode: str, endpoint: str, server: subprocess.Popen[str]) -> dict[str, float]:
    """Run one receiving process; its CPU share and RSS over the measuring window."""
    proc = _spawn(mode, endpoint, str(ITEMS), str(WARMUP_S), str(MEASURE_S))
    try:
        while _line(proc, 120) != "measure-start":
            pass
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        server_cpu0 = _cpu_seconds(server.pid)
        _drain(server)
        writes, lags = [], []
        while True:
            # the server reports its writes every second: proof that the load is really there
            if select.select([server.stdout], [], [], 0)[0]:
                _, count, at, lag = _line(server, 1).split()
                writes.append((int(count), float(at)))
                lags.append(float(lag))
            if select.select([proc.stdout], [], [], 0.2)[0]:
                break
        end = _line(proc, 1)
        assert end == "measure-end", end
        elapsed = time.monotonic() - t0
        cpu = (_cpu_seconds(proc.pid) - cpu0) / elapsed
        server_cpu = (_cpu_seconds(server.pid) - server_cpu0) / elapsed
        rss, peak = _rss_mb(proc.pid), _rss_mb(proc.pid, "VmHWM")
        figures: dict[str, float] = json.loads(_line(proc, 30))
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    figures.update(cpu_pct=cpu * 100, rss_mb=rss, peak_rss_mb=peak, server_cpu_pct=server_cpu * 100)
    if len(writes) >= 2:
        (n0, t0), (n1, t1) = writes[0], writes[-1]
        figures["server_rate"] = (n1 - n0) / (t1 - t0)
        figures["server_lag_ms"] = max(lags[1:], default=0.0)
    return figures


def _daemon_config(endpoint: str, items: int, mqtt_port: int, work: Path) -> str:
    lines = [
        "[gateway]",
        'id = "bench-opcua"',
        'site = "bench"',
        "[mqtt]",
        f"port = {mqtt_port}",
        'prefix = "mesgw"',
        "[outbox]",
        f'path = "{work / "outbox.db"}"',
        "[api]",
        "enabled = false",
        "[samples]",
        "record = true",
        f'directory = "{work / "samples"}"',
        "[logging]",
        'level = "warning"',
        'format = "json"',
        "[[machines]]",
        'id = "opcua-bench"',
        'area = "bench"',
        'line = "l1"',
        f'connector = {{ type = "opcua", endpoint = "{endpoint}", security_policy = "None", '
        f"publishing_interval_s = {PUBLISHING_INTERVAL_S}, sampling_interval_s = 0, "
        "timeout_s = 30 }",
        "[machines.tags]",
    ]
    lines += [
        f'v{i} = {{ role = "value", address = "nsu=urn:bench:opcua;s=v{i}" }}' for i in range(items)
    ]
    return "\n".join(lines) + "\n"


def _logged(samples: Path, t0: float, t1: float) -> tuple[int, int]:
    """Samples in the sample log whose source timestamps lie in [t0, t1), and the changes
    missing between them: the server writes a variable every 100 ticks and its value grows
    by one a tick, so each variable's consecutive values differ by exactly 100."""
    values: dict[str, list[float]] = {}
    for path in samples.glob("samples-*.jsonl"):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if '"tag"' not in line:
                    continue
                record = json.loads(line)
                if t0 <= datetime.fromisoformat(record["ts"]).timestamp() < t1:
                    values.setdefault(record["tag"], []).append(record["value"])
    step = ITEMS / max(1, round(ITEMS * TICK_S))
    missing = 0
    for seen in values.values():
        for a, b in itertools.pairwise(seen):
            missing += max(0, round((b - a) / step) - 1)
    return sum(map(len, values.values())), missing


def _measured_daemon(endpoint: str, server: subprocess.Popen[str]) -> dict[str, float]:
    """`mesgw run` on the server: CPU and RSS over the window, and the changes it logged."""
    with tempfile.TemporaryDirectory(prefix="mesgw-bench-opcua-") as tmp:
        work = Path(tmp)
        (work / "broker").mkdir()
        broker = Broker(work / "broker")
        broker.start()
        config = work / "gateway.toml"
        config.write_text(_daemon_config(endpoint, ITEMS, broker.port, work))
        log = (work / "gateway.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            # Subscribed once the sample log holds every variable; then the warm-up.
            deadline = time.monotonic() + 180
            while _logged(work / "samples", 0, math.inf)[0] < ITEMS:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mesgw run did not subscribe: {proc.poll()}")
                time.sleep(1)
            time.sleep(WARMUP_S)
            _drain(server)
            t0, w0 = time.monotonic(), time.time()
            cpu0, server_cpu0 = _cpu_seconds(proc.pid), _cpu_seconds(server.pid)
            writes: list[tuple[int, float]] = []
            while time.monotonic() - t0 < MEASURE_S:
                if select.select([server.stdout], [], [], 0.2)[0]:
                    _, count, at, _lag = _line(server, 1).split()
                    writes.append((int(count), float(at)))
            elapsed = time.monotonic() - t0
            w1 = w0 + elapsed
            cpu = (_cpu_seconds(proc.pid) - cpu0) / elapsed
            server_cpu = (_cpu_seconds(server.pid) - server_cpu0) / elapsed
            peak = _rss_mb(proc.pid, "VmHWM")
            time.sleep(2)  # the window's last changes reach the log (flushed every second)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            broker.stop()
        if proc.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"mesgw run ended with {proc.returncode}")
        # The server's write rate over the window, from its own reports (count, time).
        (n0, at0), (n1, at1) = (writes[0], writes[-1]) if len(writes) > 1 else ((0, 0.0), (0, 1.0))
        written = (n1 - n0) / (at1 - at0)
        logged, missing = _logged(work / "samples", w0, w1)
        return {
            "cpu_pct": cpu * 100,
            "peak_rss_mb": peak,
            "server_cpu_pct": server_cpu * 100,
            "server_rate": written,
            "logged_per_s": logged / elapsed,
            "missing": missing,
        }


def run() -> list[dict[str, object]]:
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/"
    server = _spawn("serve", str(port), str(ITEMS))
    try:
        if _line(server, 180) != "ready":
            raise RuntimeError("server did not start")
        wait_port("127.0.0.1", port)
        daemon = _measured_daemon(endpoint, server)
        gw = _measured("gateway", endpoint, server)
        raw = _measured("raw", endpoint, server)
    finally:
        server.kill()
        server.wait()
    n = f"{ITEMS:,}"
    publishing_ms = PUBLISHING_INTERVAL_S * 1000
    return [
        {
            "bench": f"opcua mesgw run ({n} items at 1 Hz, end to end, sample log on)",
            "value": daemon["cpu_pct"],
            "unit": "% core",
            "target": "< 30",
        },
        {
            "bench": "opcua mesgw run: changes logged (source ts in the window)",
            "value": daemon["logged_per_s"],
            "unit": "/s",
            "target": f"= the server's writes ({daemon['server_rate']:,.0f}/s)",
        },
        {
            "bench": "opcua mesgw run: changes missing between logged ones",
            "value": f"{daemon['missing']:.0f}",
            "unit": "",
            "target": "0 (every change arrives)",
        },
        {
            "bench": "opcua mesgw run RSS (peak)",
            "value": daemon["peak_rss_mb"],
            "unit": "MB",
            "target": "< 150",
        },
        {
            "bench": f"opcua server writes ({n} items at 1 Hz)",
            "value": gw.get("server_rate", 0.0),
            "unit": "changes/s",
            "target": f">= {ITEMS * 0.95:,.0f} (the load is real)",
        },
        {
            "bench": "opcua server process CPU (simulator, not the gateway)",
            "value": gw["server_cpu_pct"],
            "unit": "% core",
            "target": "",
        },
        {
            "bench": "opcua connector alone: samples received",
            "value": gw["samples_per_s"],
            "unit": "samples/s",
            "target": f">= {ITEMS * 0.95:,.0f}",
        },
        {
            "bench": "opcua connector alone: CPU, notification -> sample",
            "value": gw["cpu_pct"],
            "unit": "% core",
            "target": "< 30",
        },
        {
            "bench": "opcua bare asyncua receive (same load, same run: the floor)",
            "value": raw["cpu_pct"],
            "unit": "% core",
            "target": "",
        },
        {
            "bench": "opcua connector alone: longest GC pause",
            "value": gw["gc_max_ms"],
            "unit": "ms",
            "target": "",
        },
        {
            "bench": "opcua server event loop, worst lag (simulator load)",
            "value": gw.get("server_lag_ms", 0.0),
            "unit": "ms",
            "target": "",
        },
        {
            "bench": "opcua connector alone: RSS (peak)",
            "value": gw["peak_rss_mb"],
            "unit": "MB",
            "target": "< 150",
        },
        {
            "bench": "opcua notification -> sample at consumer, p50",
            "value": gw["arrival_p50_ms"],
            "unit": "ms",
            "target": "",
        },
        {
            "bench": "opcua notification -> sample at consumer, p99",
            "value": gw["arrival_p99_ms"],
            "unit": "ms",
            "target": "< 50",
        },
        {
            "bench": f"opcua source ts -> sample, p50 (publishing {publishing_ms:.0f} ms)",
            "value": gw["source_p50_ms"],
            "unit": "ms",
            "target": "",
        },
        {
            "bench": "opcua source ts -> sample, p99",
            "value": gw["source_p99_ms"],
            "unit": "ms",
            "target": "< 50",
        },
    ]


def main(argv: list[str]) -> None:
    from gateway.logging import configure

    configure("warning", stream="stderr")  # stdout carries the protocol between processes
    mode, *args = argv
    if mode == "serve":
        asyncio.run(serve(int(args[0]), int(args[1])))
    elif mode in ("gateway", "raw"):
        func = gateway if mode == "gateway" else raw_asyncua
        asyncio.run(func(args[0], int(args[1]), float(args[2]), float(args[3])))
    else:
        print(render(run()))


if __name__ == "__main__":
    main(sys.argv[1:] or ["table"])
