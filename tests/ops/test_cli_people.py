"""The command line for people: every command in the top-level help, "did you mean", a
simulator file recognised, a gateway config without machines warned about, where each
value came from, and `db migrate` on a terminal saying its summary once."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    listed = [" ".join(line.split()[:3]) for line in text.split("commands:\n")[1].splitlines()]
    for command in (
        "mesgw run", "mesgw record", "mesgw config check", "mesgw config show",
        "mesgw db migrate", "mesgw outbox stat", "mesgw outbox backup", "mesgw order start",
        "mesgw modbus read", "mesgw modbus scan", "mesgw opcua browse", "mesgw report oee",
        "mesgw replay", "mesgw simulate",
    ):  # fmt: skip
        assert any(entry.startswith(command) for entry in listed), command
    # ...and each one listed really runs as written.
    parser = build_parser()
    for entry in listed:
        words = entry.split()[1:]
        while words and not _runs(parser, words):
            words = words[:-1]
        assert words, entry


def _runs(parser: object, words: list[str]) -> bool:
    try:
        parser.parse_known_args([*words, "--help"])  # type: ignore[attr-defined]
    except SystemExit as exit_:
        return exit_.code == 0
    return False


def test_a_mistyped_key_gets_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        '[mqtt]\nhots = "broker"\n[[machines]]\nid = "m"\narea = "a"\nline = "l"\n'
        'connector = { type = "modbus", host = "h", poll_intervall_s = 1 }\n'
        '[machines.tags.good]\nrole = "good_count"\naddress = "hr:0"\nwidht = 16\n'
    )
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert f'{path}: mqtt.hots: unknown key; did you mean "host"?' in err
    assert (
        f"{path}: machines[0].connector.poll_intervall_s: unknown key; "
        'did you mean "poll_interval_s"?'
    ) in err
    assert f'{path}: machines[0].tags.good.widht: unknown key; did you mean "width"?' in err
    path.write_text("[mqtt]\nzzzz = 1\n")
    assert main(["config", "check", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"{path}: mqtt.zzzz: unknown key"


def test_config_check_knows_a_simulator_file_and_warns_without_machines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = ROOT / "deploy" / "examples" / "simulator.toml"
    assert main(["config", "check", str(sim)]) == 0
    out = capsys.readouterr().out
    assert "a simulated line for `mesgw simulate` (4 machines)" in out
    assert "--print-gateway-config" in out
    empty = tmp_path / "gw.toml"
    empty.write_text('[gateway]\nid = "gw-1"\n')
    assert main(["config", "check", str(empty)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"{empty}: ok (0 machines, 0 tags)"
    assert "warning: no [[machines]]: `mesgw run` would read nothing" in captured.err
    gateway = ROOT / "deploy" / "examples" / "gateway.toml"
    assert main(["config", "check", str(gateway)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_config_show_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[mqtt]\nhost = "broker"\nusername = "gw"\n')
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt__password").write_text("s3cret-from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("MESGW_MQTT__PORT", "8883")
    assert main(["config", "show", "--sources", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split(" = ")[0]: line for line in out.splitlines()}
    assert lines["mqtt.host"].endswith(f"# {path}")
    assert lines["mqtt.port"].endswith("# env MESGW_MQTT__PORT")
    assert lines["mqtt.password"].endswith("# credential mqtt__password")
    assert lines["mqtt.keepalive_s"].endswith("# default")
    assert "s3cret" not in out  # secrets redacted


def test_db_migrate_on_a_terminal_prints_its_summary_once(pg_dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(f'[store]\ndsn = "{pg_dsn}"\ntimescaledb = "off"\n')
    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "db", "migrate", "--config", str(path)],
        stdin=child, stdout=child, stderr=child, close_fds=True,
    )  # fmt: skip
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(parent, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=60) == 0
    os.close(parent)
    lines = [line for line in output.decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert re.match(r"applied \d+ migrations \(plain PostgreSQL\): 0001_core.sql, ", lines[0])
