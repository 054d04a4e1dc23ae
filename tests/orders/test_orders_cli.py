"""`mesgw order` against a running order API: once as a subprocess, the rest in-process."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from orders_support import MemoryDesk, settings_for

from gateway.cli import main
from gateway.config import ApiSection
from gateway.logging import configure
from gateway.orders.http import OrderApi
from gateway.testing import free_port


@pytest.fixture(autouse=True)
def quiet_logging() -> None:
    """The API server runs in this process: its info lines must not mix into the CLI's
    stderr, whatever an earlier test left the logging set to."""
    configure("warning")


TOKEN = "cli-test-token-0123456789"
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d|^\{\"")


@dataclass
class Run:
    code: int
    out: str
    err: str


async def mesgw(*args: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> Run:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESGW_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "order",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**base, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def in_thread(*args: str, capsys: pytest.CaptureFixture[str], stdin: bytes = b"") -> Run:
    """`mesgw order …` in this process (its own event loop, in a thread): no start-up cost."""
    capsys.readouterr()
    if stdin:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        code = await asyncio.to_thread(main, ["order", *args])
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    # The API server in this process logs to the same stdout; keep the command's own output.
    out = "".join(line for line in out.splitlines(True) if not _LOG_LINE.match(line))
    return Run(code, out, err)


@asynccontextmanager
async def serving(desk: MemoryDesk, **api: Any) -> AsyncIterator[OrderApi]:
    server = OrderApi(settings_for(api=ApiSection(port=0, **api)), desk)
    task = asyncio.create_task(server.run(), name="orders-api")
    try:
        assert await server.wait_started(5)
        yield server
    finally:
        await server.stop()
        await task


async def test_start_list_stop_import(tmp_path: Path, desk: MemoryDesk) -> None:
    schedule = tmp_path / "week.csv"
    schedule.write_text(
        "order_id,product,quantity,ideal_cycle_time_s,machine\nWO-7,Cap,500,1.5,capper-1\n"
    )
    async with serving(desk) as server:
        api = ("--api", server.url)
        started = await mesgw("start", *api, "filler-1", "WO-1", "--product", "Bottle",
                              "--quantity", "100", "--ideal-cycle-time", "0.5")  # fmt: skip
        assert (started.code, started.out) == (0, "filler-1: order WO-1 running\n")
        imported = await mesgw("import", *api, str(schedule))
        assert (imported.code, imported.out) == (0, f"{schedule}: 1 orders planned\n")
        listed = await mesgw("list", *api)
        assert listed.code == 0
        assert listed.out.splitlines() == [
            "MACHINE   ORDER_ID  STATUS   PRODUCT  QUANTITY",
            "filler-1  WO-1      running  Bottle   100",
            "capper-1  WO-7      planned  Cap      500",
        ]
        stopped = await mesgw("stop", *api, "filler-1", "WO-1")
        assert (stopped.code, stopped.out) == (0, "filler-1: order WO-1 completed\n")
    [start, stop] = desk.commands
    assert (start.origin, start.product, start.quantity, start.ideal_cycle_time_s) == (
        "cli",
        "Bottle",
        100,
        0.5,
    )
    assert (stop.action, stop.order_id, stop.origin) == ("stop", "WO-1", "cli")


async def test_refusals_exit_1_with_the_reason(
    tmp_path: Path, desk: MemoryDesk, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("order_id,product,quantity,ideal_cycle_time_s\nWO-1,P,zero,\n,P,1,\n")
    async with serving(desk) as server:
        api = ("--api", server.url)
        refused = await in_thread("stop", *api, "filler-1", capsys=capsys)
        assert refused.code == 1 and refused.out == ""
        assert refused.err == (
            "mesgw: filler-1: order stop refused: no order is running on filler-1\n"
        )
        unknown = await in_thread("start", *api, "press-9", "WO-1", capsys=capsys)
        assert unknown.err == (
            "mesgw: press-9: order start refused: unknown machine 'press-9' on this gateway\n"
        )
        rejected = await in_thread("import", *api, "-", capsys=capsys, stdin=bad.read_bytes())
        assert rejected.code == 1
        assert rejected.err.splitlines() == [
            "mesgw: -: schedule refused, nothing imported: 2 problem(s)",
            "-: line 2: quantity: 'zero' is not a whole number from 1 to 1,000,000,000,000",
            "-: line 3: order_id: required",
        ]
    assert desk.planned == {}


async def test_address_and_token_from_the_gateway_config(
    tmp_path: Path,
    desk: MemoryDesk,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = tmp_path / "api.token"
    secret.write_text(TOKEN)
    async with serving(desk, token=TOKEN) as server:
        conf = tmp_path / "gateway.toml"
        conf.write_text(f'[api]\nport = {server.port}\ntoken_file = "{secret}"\n')
        listed = await in_thread("list", "--json", "--config", str(conf), capsys=capsys)
        assert (listed.code, listed.err, json.loads(listed.out)) == (0, "", [])
        # Without the config: the token from a file or the environment.
        api = ("--api", server.url)
        assert (await in_thread("list", *api, "--token-file", str(secret), capsys=capsys)).code == 0
        denied = await in_thread("list", *api, capsys=capsys)
        assert denied.code == 1
        assert denied.err == (
            f"mesgw: the order API refused the token ({server.url}/api/v1/orders); "
            "give --token-file or $MESGW_API__TOKEN\n"
        )
        monkeypatch.setenv("MESGW_API__TOKEN", TOKEN)
        assert (await in_thread("list", *api, capsys=capsys)).code == 0


async def test_no_daemon_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = await in_thread("list", "--api", url, capsys=capsys)
    assert run.code == 1
    assert run.err.startswith(f"mesgw: cannot reach the order API at {url}/api/v1/orders: ")
    assert run.err.endswith("(is `mesgw run` running, with api.enabled?)\n")
    broken = tmp_path / "gateway.toml"
    broken.write_text("[api]\ncolour = 'red'\n")
    run = await in_thread("list", "--config", str(broken), capsys=capsys)
    assert (run.code, run.err) == (2, f"{broken}: api.colour: unknown key\n")
