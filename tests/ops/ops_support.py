"""Real processes for the operations tests: `mesgw simulate`, `mesgw run`, `mesgw record`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from gateway.config import StoreSection
from gateway.store.migrate import migrate

MESGW = [sys.executable, "-m", "gateway"]


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def lines(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def spawn(
    procs: list[Proc], tmp: Path, name: str, args: list[str], env: dict[str, str] | None = None
) -> Proc:
    log = tmp / f"{name}.log"
    fh = log.open("ab")
    proc = subprocess.Popen(
        [*MESGW, *args], stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    p = Proc(proc, log)
    procs.append(p)
    return p


async def wait_for(predicate: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {within_s}s waiting for {what}")


async def wait_logged(proc: Proc, event: str, within_s: float = 30) -> dict[str, object]:
    found: list[dict[str, object]] = []

    async def logged() -> bool:
        found[:] = [line for line in proc.lines() if line.get("event") == event]
        return bool(found)

    await wait_for(logged, within_s, f"{event!r} in {proc.log.name}")
    return found[0]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


async def get(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, url)


def parse_metrics(text: str) -> dict[str, float]:
    """`name{labels}` → value, for every sample line of a Prometheus text exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    total, found = 0.0, False
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
            found = True
    if not found:
        raise KeyError(f"{name} {labels} not in the scrape")
    return total


async def setup_db(dsn: str) -> None:
    await migrate(StoreSection(dsn=SecretStr(dsn), timescaledb="off"))


async def fetchval(dsn: str, query: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


SIM_LINE = """
seed = 7
[opcua]
host = "127.0.0.1"
port = {opcua_port}
namespace = "urn:mesgw:sim"
[modbus]
host = "127.0.0.1"
port = {modbus_port}
[[machines]]
id = "filler-1"
area = "packaging"
line = "line-1"
protocol = "opcua"
cycle_time_s = 0.2
reject_ratio = 0.02
states = "packtags"
order = "WO-1"
counters = {{ good = {{ width = 32 }}, reject = {{ width = 32 }} }}
[[machines]]
id = "labeler-1"
area = "packaging"
line = "line-1"
protocol = "modbus"
unit = 1
# Not faster: the rules infer a stop after 3 cycles without a count, and the Modbus poll
# is 1 s; at 0.25 s the labeler would flicker running/down and never settle.
cycle_time_s = 0.5
reject_ratio = 0.03
order = "WO-1"
counters = {{ good = {{ width = 32 }}, reject = {{ width = 32 }} }}
"""


def gateway_text(
    *,
    broker_port: int,
    prefix: str,
    dsn: str,
    outbox: Path,
    metrics_port: int,
    machines: str = "",
    client_id: str = "rec",
    in_process: bool = False,
    extra: str = "",
) -> str:
    return f"""
[gateway]
id = "gw-ops"
site = "s"
shutdown_timeout_s = 15
flush_timeout_s = 8
status_interval_s = 1
[mqtt]
port = {broker_port}
prefix = "{prefix}"
reconnect_min_s = 0.05
reconnect_max_s = 0.5
[api]
port = 0
[outbox]
path = "{outbox}"
synchronous = "normal"
[store]
dsn = "{dsn}"
timescaledb = "off"
[recorder]
client_id = "{client_id}"
batch_wait_ms = 10
retry_max_s = 1
in_process = {str(in_process).lower()}
[metrics]
port = {metrics_port}
[logging]
format = "json"
[rules]
count_interval_s = 1
{extra}
{machines}"""
