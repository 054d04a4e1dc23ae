"""`mesgw simulate`: standalone runs, SIGTERM, the truth file, the printed gateway config."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, main
from gateway.config import load_config
from gateway.testing import free_port

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "examples" / "simulator.toml"


def line_file(tmp_path: Path, opcua_port: int, modbus_port: int) -> Path:
    path = tmp_path / "line.toml"
    path.write_text(
        f"""
seed = 3
[opcua]
port = {opcua_port}
[modbus]
port = {modbus_port}
byte_order = "DCBA"

[[machines]]
id = "filler-1"
area = "packaging"
line = "line-1"
protocol = "opcua"
cycle_time_s = 0.01

[[machines]]
id = "labeler-1"
area = "packaging"
line = "line-1"
protocol = "modbus"
cycle_time_s = 0.01
counters = {{ good = {{ width = 16, initial = 65530 }}, reject = {{ width = 16 }} }}
"""
    )
    return path


async def test_simulate_runs_a_scenario_and_writes_the_truth_on_sigterm(
    tmp_path: Path, probe: Any
) -> None:
    opcua_port, modbus_port = free_port(), free_port()
    config = line_file(tmp_path, opcua_port, modbus_port)
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        """
[steps]
labeler-1 = [
  { do = "order", order = "WO-7" },
  { do = "run", parts = 20, rejects = 2 },
  { do = "fault", reason = 42, seconds = 0.2 },
]
filler-1 = [{ do = "run", parts = 15 }]
"""
    )
    truth_file = tmp_path / "truth.json"
    log = (tmp_path / "simulate.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gateway", "simulate", "--config", str(config)),
        *("--scenario", str(scenario), "--truth", str(truth_file)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        await probe.eventually(truth_file.exists, timeout_s=30)
        written = json.loads(truth_file.read_text())
        assert written["scenario_done"] is not None and written["ended"] is None
        labeler = written["machines"]["labeler-1"]
        assert labeler["made"] == {"good": 18, "reject": 2, "total": 20}
        assert labeler["orders"] == {"WO-7": {"good": 18, "reject": 2, "total": 20}}
        assert labeler["counters"] == {"good": 12, "reject": 2}  # 65530 + 18 wrapped
        assert [(i["kind"], i["state"], i["reason"]) for i in labeler["intervals"]] == [
            ("idle", 4, 0),
            ("running", 6, 0),
            ("faulted", 9, 42),
            ("idle", 4, 0),
        ]
        assert written["machines"]["filler-1"]["made"]["total"] == 15

        async with probe.modbus_client("127.0.0.1", modbus_port) as client:
            good = await probe.read_modbus(
                client, 1, {"address": "hr:0", "type": "uint16", "order": "DCBA"}
            )
            order = await probe.read_modbus(
                client, 1, {"address": "hr:16", "type": "string", "order": "DCBA", "length": 16}
            )
        assert (good, order) == (12, "WO-7")

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
    final = json.loads(truth_file.read_text())
    assert final["ended"] is not None
    assert final["machines"]["labeler-1"]["made"]["total"] == 20
    output = (tmp_path / "simulate.log").read_text()
    assert "scenario done" in output and "Traceback" not in output


def test_print_gateway_config_output_is_a_valid_gateway_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--config", str(EXAMPLE), "--print-gateway-config"]) == EXIT_OK
    printed = capsys.readouterr().out
    gateway = tmp_path / "gateway.toml"
    gateway.write_text('[gateway]\nsite = "demo"\n\n' + printed)
    settings = load_config(gateway)
    assert [m.id for m in settings.machines] == ["filler-1", "capper-1", "labeler-1", "packer-1"]
    assert sum(len(m.tags) for m in settings.machines) == 7 + 7 + 10 + 9


def test_config_errors_exit_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[machines]]\nid = "M1"\narea = "a"\nline = "l"\nprotocol = "modbus"\n')
    assert main(["simulate", "--config", str(bad)]) == EXIT_CONFIG
    assert capsys.readouterr().err.startswith(f"{bad}: machines[0].id: must be lower-case")

    good = line_file(tmp_path, 0, 0)
    nowhere = tmp_path / "missing" / "truth.json"
    assert main(["simulate", "--config", str(good), "--truth", str(nowhere)]) == EXIT_CONFIG
    assert capsys.readouterr().err == (f"--truth {nowhere}: no such directory {nowhere.parent}\n")

    free = line_file(tmp_path, 0, 5020)
    assert main(["simulate", "--config", str(free), "--print-gateway-config"]) == EXIT_CONFIG
    assert "filler-1 is served on a free port chosen at start" in capsys.readouterr().err


def test_a_busy_port_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "line.toml"
        config.write_text(
            f'[modbus]\nport = {port}\n[[machines]]\nid = "m"\narea = "a"\nline = "l"\n'
            'protocol = "modbus"\n'
        )
        assert main(["simulate", "--config", str(config)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(
        f"mesgw: cannot serve the simulated line: cannot listen on 127.0.0.1:{port}"
    )
