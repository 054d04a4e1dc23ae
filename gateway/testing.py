"""Development harness shared by tests and benchmarks: private brokers and databases."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

from common.net import free_port as free_port
from gateway.events import CountData, Event, uuid7
from gateway.store.writer import Received

SHIPPED_BROKER_CONF = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "mesgw.conf"


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


@dataclass
class Broker:
    """A private Mosquitto on a free port; stop/start keep its persistence directory."""

    workdir: Path
    extra_conf: str = ""
    base_conf: Path | None = SHIPPED_BROKER_CONF
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def _write_conf(self) -> None:
        lines = []
        if self.base_conf is not None:
            # The shipped config's own listener/persistence lines are replaced by ours.
            for line in self.base_conf.read_text().splitlines():
                key = line.strip().split(" ", 1)[0]
                if key in {
                    "listener",
                    "persistence_location",
                    "log_dest",
                    "pid_file",
                    "include_dir",
                    "user",
                    "password_file",
                    "acl_file",
                    "allow_anonymous",
                    "cafile",
                    "certfile",
                    "keyfile",
                }:
                    continue
                lines.append(line)
        lines += [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.workdir}/mosquitto.log",
            # Started as root, Mosquitto would switch to user "mosquitto" and then could not
            # write its persistence file or log into our private directory.
            "user root" if os.geteuid() == 0 else "",
            self.extra_conf,
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        assert self.proc is None, "already running"
        self._write_conf()
        self.proc = subprocess.Popen(
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.host, self.port)

    def stop(self) -> None:
        """Orderly stop: Mosquitto saves its persistence file (sessions, queued messages)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        self.proc = None

    def kill(self) -> None:
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    @property
    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text() if path.exists() else ""


@asynccontextmanager
async def temporary_database(admin_dsn: str, prefix: str = "mesgw_t") -> AsyncIterator[str]:
    """A fresh, empty database on the server of `admin_dsn`; yields its DSN, drops it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def count_event(
    *,
    seq: int,
    ts: datetime,
    machine: str = "m1",
    good: int = 5,
    order: str | None = None,
    shift: str | None = None,
    interval: timedelta = timedelta(seconds=1),
    event_id: uuid.UUID | None = None,
    gateway: str = "gw-01",
    site: str = "s1",
    area: str = "a1",
    line: str = "l1",
) -> Event:
    """A sealed count event (one reject per interval) for tests and benchmarks."""
    data = CountData(good=good, reject=1, total=good + 1, start=ts - interval, end=ts)
    return Event(
        event_id=event_id or uuid7(),
        type="count",
        ts=ts,
        gateway=gateway,
        seq=seq,
        site=site,
        area=area,
        line=line,
        machine=machine,
        order=order,
        shift=shift,
        data=data,
    )


def received(event: Event, prefix: str = "mes/v1") -> Received:
    """`event` as the recorder hands it to the store: raw bytes and its topic."""
    kind = event.type.partition(".")[0]
    topic = f"{prefix}/{event.site}/{event.area}/{event.line}/{event.machine}/{kind}"
    return Received(event=event, payload=event.to_json(), topic=topic)
