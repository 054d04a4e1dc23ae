"""End to end with real processes: `mesgw run` → Mosquitto → `mesgw record` → PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr

from gateway.config import OutboxSection, StoreSection
from gateway.outbox import Outbox, read_stats
from gateway.store.migrate import migrate
from gateway.testing import Broker, free_port

pytestmark = pytest.mark.integration

MESGW = [sys.executable, "-m", "gateway"]


def config_text(
    *,
    port: int,
    prefix: str,
    dsn: str,
    outbox: Path,
    events: int | None,
    interval_s: float = 0.002,
    in_process: bool = False,
    client_id: str = "rec",
) -> str:
    machine = (
        f"""
[[machines]]
id = "m1"
area = "a"
line = "l"
[machines.connector]
type = "synthetic"
cycle_time_s = 0.0005
count_interval_s = {interval_s}
events = {events}
seed = 1
"""
        if events is not None
        else ""
    )
    return f"""
[gateway]
id = "gw-test"
site = "s"
shutdown_timeout_s = 15
flush_timeout_s = 8
status_interval_s = 0.5
[mqtt]
port = {port}
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
[recorder]
client_id = "{client_id}"
in_process = {str(in_process).lower()}
batch_wait_ms = 10
retry_max_s = 1
[logging]
format = "json"
{machine}"""


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
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


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
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within_s}s waiting for {what}")


async def recorder_subscribed(rec: Proc) -> None:
    """Wait until the recorder's session exists: events published before it reach nobody."""

    async def subscribed() -> bool:
        return any(line.get("event") == "subscribed" for line in rec.lines())

    await wait_for(subscribed, 30, "the recorder to subscribe")


async def db_seqs(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("select seq from events where gateway = 'gw-test' order by seq")
    finally:
        await conn.close()
    return [r["seq"] for r in rows]


async def setup_db(dsn: str) -> None:
    await migrate(StoreSection(dsn=SecretStr(dsn), timescaledb="off"))


async def outbox_rows(path: Path) -> list[tuple[int, str]]:
    box = Outbox(OutboxSection(path=path), gateway_id="gw-test", site="s")
    await box.open()
    try:
        rows = await box.peek(0, 10**7)
    finally:
        await box.close()
    return [(r.event.seq, str(r.event.event_id)) for r in rows]


async def test_events_flow_end_to_end(
    tmp_path: Path, broker: Broker, pg_dsn: str, prefix: str, procs: list[Proc]
) -> None:
    await setup_db(pg_dsn)
    conf = tmp_path / "gw.toml"
    conf.write_text(
        config_text(
            port=broker.port, prefix=prefix, dsn=pg_dsn, outbox=tmp_path / "o.db", events=500
        )
    )
    await recorder_subscribed(spawn(procs, tmp_path, "recorder", ["record", "--config", str(conf)]))
    gw = spawn(procs, tmp_path, "gateway", ["run", "--config", str(conf)])

    async def all_arrived() -> bool:
        return len(await db_seqs(pg_dsn)) >= 500

    await wait_for(all_arrived, 60, "500 events in PostgreSQL")
    assert await db_seqs(pg_dsn) == list(range(1, 501))  # each once, none missing
    assert gw.stop() == 0
    assert read_stats(tmp_path / "o.db").depth == 0


async def test_kill_9_with_events_in_the_outbox_loses_nothing(
    tmp_path: Path, pg_dsn: str, prefix: str, procs: list[Proc]
) -> None:
    await setup_db(pg_dsn)
    port = free_port()  # no broker there yet: events pile up in the outbox
    outbox = tmp_path / "o.db"
    conf = tmp_path / "gw.toml"
    conf.write_text(config_text(port=port, prefix=prefix, dsn=pg_dsn, outbox=outbox, events=0))
    gw = spawn(procs, tmp_path, "gateway", ["run", "--config", str(conf)])

    async def piled_up() -> bool:
        return outbox.exists() and read_stats(outbox).depth >= 2000

    await wait_for(piled_up, 60, "2000 events in the outbox")
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(timeout=10)
    committed = await outbox_rows(outbox)
    seqs = [s for s, _ in committed]
    assert seqs == list(range(1, len(seqs) + 1))

    b = Broker(workdir=tmp_path / "broker", port=port)
    b.workdir.mkdir()
    b.start()
    try:
        # Restart with a source that makes 5 more events: seq must continue after the kill.
        conf.write_text(
            config_text(
                port=port, prefix=prefix, dsn=pg_dsn, outbox=outbox, events=5, interval_s=0.01
            )
        )
        rec = spawn(procs, tmp_path, "recorder", ["record", "--config", str(conf)])
        await recorder_subscribed(rec)
        gw2 = spawn(procs, tmp_path, "gateway2", ["run", "--config", str(conf)])
        expected = len(seqs) + 5

        async def all_arrived() -> bool:
            return len(await db_seqs(pg_dsn)) >= expected

        await wait_for(all_arrived, 90, f"{expected} events in PostgreSQL")
        assert await db_seqs(pg_dsn) == list(range(1, expected + 1))
        conn = await asyncpg.connect(pg_dsn)
        try:
            ids = {str(r["event_id"]) for r in await conn.fetch("select event_id from events")}
        finally:
            await conn.close()
        assert {i for _, i in committed} <= ids
        assert gw2.stop() == 0
    finally:
        b.kill()


async def test_broker_down_and_back_loses_nothing(
    tmp_path: Path, broker: Broker, pg_dsn: str, prefix: str, procs: list[Proc]
) -> None:
    await setup_db(pg_dsn)
    conf = tmp_path / "gw.toml"
    conf.write_text(
        config_text(
            port=broker.port,
            prefix=prefix,
            dsn=pg_dsn,
            outbox=tmp_path / "o.db",
            events=3000,
            interval_s=0.005,
            in_process=True,
        )
    )
    gw = spawn(procs, tmp_path, "gateway", ["run", "--config", str(conf)])

    async def some_arrived() -> bool:
        return len(await db_seqs(pg_dsn)) >= 200

    await wait_for(some_arrived, 60, "first events")
    broker.stop()
    await asyncio.sleep(2)  # the source keeps producing into the outbox meanwhile
    broker.start()

    async def all_arrived() -> bool:
        return len(await db_seqs(pg_dsn)) >= 3000

    await wait_for(all_arrived, 120, "3000 events after the broker came back")
    assert await db_seqs(pg_dsn) == list(range(1, 3001))
    assert gw.stop() == 0


async def test_sigterm_stops_in_order_and_says_offline(
    tmp_path: Path, broker: Broker, pg_dsn: str, prefix: str, procs: list[Proc]
) -> None:
    conf = tmp_path / "gw.toml"
    conf.write_text(
        config_text(port=broker.port, prefix=prefix, dsn=pg_dsn, outbox=tmp_path / "o.db", events=0)
    )
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(20)
    try:
        gw = spawn(
            procs,
            tmp_path,
            "gateway",
            ["run", "--config", str(conf)],
            env={"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "2000000"},
        )
        messages = []
        while not any(m.startswith("READY=1") for m in messages):
            messages.append(sock.recv(4096).decode())
        await asyncio.sleep(1.0)
        started = time.monotonic()
        assert gw.stop() == 0
        stop_s = time.monotonic() - started
        sock.settimeout(0.5)
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    finally:
        sock.close()
    assert "WATCHDOG=1" in messages
    assert any(m.startswith("STOPPING=1") for m in messages)
    assert stop_s < 15
    assert read_stats(tmp_path / "o.db").depth == 0  # flushed to the broker before exiting

    # The retained status says offline after an orderly stop.
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, msg: got.append(msg.payload)
    client.connect("127.0.0.1", broker.port)
    client.subscribe(f"{prefix}/s/gateway/gw-test/status", qos=1)
    client.loop_start()
    try:
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.1)
    finally:
        client.loop_stop()
        client.disconnect()
    assert got and json.loads(got[0])["status"] == "offline"


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('[mqtt]\nport = "x"\n[outbox]\nsize = 3\n')
    result = subprocess.run(
        [*MESGW, "run", "--config", str(conf)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert f"{conf}: mqtt.port:" in result.stderr
    assert f"{conf}: outbox.size: unknown key" in result.stderr
    check = subprocess.run(
        [*MESGW, "config", "check", str(conf)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 2 and check.stderr == result.stderr
