"""The fault suite: the simulated line (OPC UA + Modbus, real servers) → `mesgw run` →
Mosquitto → `mesgw record` → PostgreSQL, through one fault each. Every run ends with the
parts per machine and order in the database equal to the simulator's truth, every event of
the gateway stored exactly once (each `seq` once, no event id twice), and prints the time to
catch up after the fault and the drain rate.

`make test` runs the short form (a 8 s database outage, a 10,000-event backlog);
`make chaos` (MESGW_CHAOS=full) the full one (90 s, 100,000).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from connectors.simulator.config import SimConfig
from connectors.simulator.gateway_config import render_toml
from connectors.simulator.line import SimulatedLine
from connectors.simulator.scenario import parse_scenario
from gateway.testing import Broker, free_port

pytestmark = pytest.mark.integration

FULL = os.environ.get("MESGW_CHAOS") == "full"
DB_OUTAGE_S = 90.0 if FULL else 8.0
BACKLOG = 100_000 if FULL else 10_000
CYCLE_S = 0.1
RESULTS = Path(os.environ.get("MESGW_CHAOS_RESULTS", "/tmp/mesgw-chaos-results.txt"))

SIM = {
    "seed": 11,
    "opcua": {"host": "127.0.0.1", "port": 0, "namespace": "urn:mesgw:sim"},
    "modbus": {"host": "127.0.0.1", "port": 0},
    "machines": [
        {
            "id": "filler-1", "area": "packaging", "line": "line-1", "protocol": "opcua",
            "cycle_time_s": CYCLE_S, "reject_ratio": 0.05, "states": "packtags",
            "order": "WO-1", "counters": {"good": {"width": 32}, "reject": {"width": 32}},
        },
        {
            "id": "labeler-1", "area": "packaging", "line": "line-1", "protocol": "modbus",
            "port": 0, "unit": 1, "cycle_time_s": CYCLE_S, "reject_ratio": 0.05,
            "states": "packtags", "order": "WO-1",
            "counters": {"good": {"width": 16}, "reject": {"width": 16}},
        },
    ],
}  # fmt: skip


def scenario(seconds: float, *, drop: bool = False) -> dict[str, object]:
    parts = int(seconds / CYCLE_S)
    labeler: list[dict[str, object]] = [{"do": "run", "parts": parts // 2}]
    if drop:  # the PLC disconnect: the labeler's server goes away for 5 s, production goes on
        labeler.append({"do": "drop", "seconds": 5})
    labeler.append({"do": "run", "parts": parts - parts // 2})
    return {
        "end": "idle",
        "steps": {"filler-1": [{"do": "run", "parts": parts}], "labeler-1": labeler},
    }


class DbProxy:
    """A TCP proxy in front of PostgreSQL that can be cut: the database 'goes away' for the
    recorder while the shared server keeps serving everybody else."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links -= {writer, up_writer}


@dataclass
class Stack:
    tmp: Path
    broker: Broker
    dsn: str
    proxy: DbProxy
    line: SimulatedLine
    prefix: str
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    @property
    def recorder_dsn(self) -> str:
        _, _, name = self.dsn.rpartition("/")
        return f"postgresql://postgres@127.0.0.1:{self.proxy.port}/{name}"

    def config(self, name: str, *, synthetic_events: int = 0, share: bool = False) -> Path:
        machines = self.line.gateway_machines()
        for machine in machines:
            machine["down_after_s"] = 30  # faults are not stops of the machine
            if machine["connector"]["type"] == "modbus":
                machine["connector"]["poll_interval_s"] = 0.2
                machine["connector"]["reconnect_max_s"] = 1.0
            else:
                machine["connector"]["publishing_interval_s"] = 0.2
                machine["connector"]["reconnect_max_s"] = 1.0
        synthetic = (
            f"""
[[machines]]
id = "bulk-1"
area = "packaging"
line = "line-2"
[machines.connector]
type = "synthetic"
cycle_time_s = 0.0002
count_interval_s = 0.001
events = {synthetic_events}
seed = 3
"""
            if synthetic_events
            else ""
        )
        path = self.tmp / f"{name}.toml"
        path.write_text(
            f"""
[gateway]
id = "gw-chaos"
site = "plant"
status_interval_s = 1
shutdown_timeout_s = 20
[mqtt]
port = {self.broker.port}
prefix = "{self.prefix}"
reconnect_min_s = 0.1
reconnect_max_s = 1
[api]
port = 0
[metrics]
enabled = false
[outbox]
path = "{self.tmp / "outbox.db"}"
synchronous = "normal"
[store]
dsn = "{self.recorder_dsn}"
timescaledb = "off"
connect_timeout_s = 3
[recorder]
client_id = "{name}"
batch_wait_ms = 20
retry_max_s = 2
{'share_group = "recorders"' if share else ""}
[logging]
format = "json"
[rules]
count_interval_s = 1
{synthetic}"""
            + render_toml(machines)
        )
        return path

    async def spawn(self, name: str, *args: str) -> None:
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", *args,
            stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip

    async def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        await proc.wait()

    async def stop(self, name: str) -> int:
        proc = self.procs.pop(name)
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 40)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode

    async def stop_all(self) -> None:
        for name in list(self.procs):
            await self.stop(name)


async def eventually(check: object, within_s: float, what: str) -> float:
    """Seconds until `check()` is true."""
    assert callable(check)
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {within_s:g} s waiting for {what}")


@pytest.fixture
async def stack(tmp_path: Path, broker: Broker, pg_dsn: str, prefix: str) -> AsyncIterator[Stack]:
    from pydantic import SecretStr

    from gateway.config import StoreSection
    from gateway.store.migrate import migrate

    await migrate(StoreSection(dsn=SecretStr(pg_dsn), timescaledb="off"))
    port = int(pg_dsn.rsplit(":", 1)[1].split("/")[0])
    proxy = DbProxy(port)
    await proxy.start()
    config = SimConfig.model_validate(SIM)
    async with SimulatedLine(config) as line:
        s = Stack(tmp_path, broker, pg_dsn, proxy, line, prefix)
        try:
            yield s
        finally:
            await s.stop_all()
            with contextlib.suppress(Exception):
                await proxy.cut()


async def fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def parts(dsn: str) -> dict[tuple[str, str], tuple[int, int]]:
    rows = await fetch(
        dsn,
        "select machine, order_id, sum(good)::int g, sum(reject)::int r from counts"
        " where machine <> 'bulk-1' group by 1, 2 having sum(total) > 0",
    )
    return {(r["machine"], r["order_id"]): (r["g"], r["r"]) for r in rows}


def truth(line: SimulatedLine) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (m, order): (made.good, made.reject)
        for m, t in line.truth.machines.items()
        for order, made in t.orders.items()
        if made.total
    }


async def stored_once(dsn: str) -> tuple[int, int, int, int]:
    """(events, distinct seqs, distinct ids, highest seq) of the gateway's events."""
    (row,) = await fetch(
        dsn,
        "select count(*)::int n, count(distinct seq)::int seqs,"
        " count(distinct event_id)::int ids, coalesce(max(seq), 0)::int top from events",
    )
    return row["n"], row["seqs"], row["ids"], row["top"]


FAULTS = [
    "gateway-kill-9",
    "recorder-kill-9",
    "broker-restart",
    "db-outage",
    "plc-disconnect",
    "backlog",
]


@pytest.mark.timeout(1800 if FULL else 400)
@pytest.mark.parametrize("fault", FAULTS)
async def test_the_line_survives(stack: Stack, fault: str) -> None:
    s = stack
    share = fault == "recorder-kill-9"
    recorders = ["rec-a", "rec-b"] if share else ["rec-a"]
    backlog = BACKLOG if fault == "backlog" else 0
    run_s = DB_OUTAGE_S + 15 if fault == "db-outage" else 20.0
    gw_conf = s.config("gateway", synthetic_events=backlog)
    for name in recorders:
        if fault != "backlog":
            await s.spawn(name, "record", "--config", str(s.config(name, share=share)))
    await s.spawn("gateway", "run", "--config", str(gw_conf))

    async def orders_seen() -> bool:
        rows = await fetch(
            s.dsn, "select count(distinct machine) n from events where type = 'order.started'"
        )
        return bool(rows[0]["n"] == 2)

    if fault == "backlog":
        # The recorder's session exists (it subscribed once) but it is away while the
        # gateway publishes the backlog; the broker queues it.
        await s.spawn("rec-a", "record", "--config", str(s.config("rec-a")))
        await eventually(orders_seen, 90, "the gateway reading both machines")
        await s.kill("rec-a")
    else:
        await eventually(orders_seen, 90, "the gateway reading both machines")

    plan = parse_scenario(scenario(run_s, drop=fault == "plc-disconnect"), s.line.config, "<chaos>")
    production = asyncio.create_task(s.line.run_scenario(plan))
    await asyncio.sleep(run_s / 3)
    healed = time.monotonic()
    if fault == "gateway-kill-9":
        await s.kill("gateway")
        await asyncio.sleep(3)
        healed = time.monotonic()
        await s.spawn("gateway", "run", "--config", str(gw_conf))
    elif fault == "recorder-kill-9":
        await s.kill("rec-b")
        await asyncio.sleep(3)
        healed = time.monotonic()
        await s.spawn("rec-b", "record", "--config", str(s.config("rec-b", share=True)))
    elif fault == "broker-restart":
        s.broker.stop()
        await asyncio.sleep(3)
        s.broker.start()
        healed = time.monotonic()
    elif fault == "db-outage":
        await s.proxy.cut()
        await asyncio.sleep(DB_OUTAGE_S)
        await s.proxy.start()
        healed = time.monotonic()
    elif fault == "plc-disconnect":
        healed = time.monotonic()  # the drop is part of the scenario, healed by it
    await production
    healed = max(healed, time.monotonic())  # catch-up counts from the later of the two
    if fault == "backlog":
        await eventually(
            lambda: outbox_empty(s.tmp / "outbox.db"), 600, "the backlog handed to the broker"
        )
        healed = time.monotonic()
        await s.spawn("rec-a", "record", "--config", str(s.config("rec-a")))
    before = (await stored_once(s.dsn))[0]
    since = (await fetch(s.dsn, "select now() t"))[0]["t"]
    expected = truth(s.line)

    async def complete() -> bool:
        if await parts(s.dsn) != expected:
            return False
        if not backlog:
            return True
        return (await stored_once(s.dsn))[0] >= BACKLOG  # the whole backlog is in

    limit = 180 + (BACKLOG / 500 if backlog else 0)
    await eventually(complete, limit, "parts = truth")
    caught_up = time.monotonic() - healed
    drained = (await stored_once(s.dsn))[0] - before
    # The drain rate is the store's: rows over the span of their commits (the recorder's
    # start-up is in the catch-up time, not in the rate).
    (span,) = await fetch(
        s.dsn,
        "select extract(epoch from max(received_at) - min(received_at))::float s"
        f" from events where received_at > '{since.isoformat()}'",
    )
    # Everything the gateway made is stored, each event once: an orderly stop flushes the
    # last counts; the recorders keep recording until the store has the last seq.
    assert await s.stop("gateway") == 0
    from gateway.outbox import read_stats

    last_seq = read_stats(s.tmp / "outbox.db").last_seq

    async def settled() -> bool:
        return await stored_once(s.dsn) == (last_seq,) * 4

    try:
        await eventually(settled, 120, "every event stored exactly once")
    except AssertionError:
        rows = await fetch(s.dsn, "select seq from events")
        have = {r["seq"] for r in rows}
        missing = sorted(set(range(1, last_seq + 1)) - have)
        raise AssertionError(
            f"{len(have)} of {last_seq} events stored; missing seqs {missing[:20]}"
        ) from None
    assert await parts(s.dsn) == truth(s.line)
    rate = drained / span["s"] if span["s"] else 0.0
    row = (
        f"| {fault} | {caught_up:.1f} s | {rate:,.0f} events/s | {last_seq:,} events, each once | "
        f"{sum(g + r for g, r in expected.values()):,} parts = truth |"
    )
    print("\n" + row)
    await asyncio.to_thread(_append, RESULTS, row + "\n")


def _append(path: Path, text: str) -> None:
    with path.open("a") as out:
        out.write(text)


async def outbox_empty(path: Path) -> bool:
    from gateway.outbox import read_stats

    try:
        stats = read_stats(path)
    except (OSError, ValueError):
        return False
    return stats.depth == 0 and stats.last_seq >= BACKLOG
