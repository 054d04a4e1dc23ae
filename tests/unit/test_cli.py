"""The command line: exit codes and output a person or a script relies on."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from gateway.cli import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, main

ROOT = Path(__file__).resolve().parents[2]


def test_config_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    example = ROOT / "deploy" / "examples" / "gateway.toml"
    assert main(["config", "check", str(example)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"{example}: ok (3 machines, 7 tags)"


def test_config_check_reports_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nsite = 'Plant 1'\n")
    assert main(["config", "check", str(bad)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}: gateway.site: must be lower-case")


def test_config_show_is_json_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "g.toml"
    conf.write_text("[mqtt]\nusername = 'gw'\n")
    monkeypatch.setenv("MESGW_MQTT__PASSWORD", "topsecret")
    assert main(["config", "show", "--config", str(conf)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "topsecret" not in out
    shown = json.loads(out)
    assert shown["mqtt"]["username"] == "gw" and shown["mqtt"]["password"] == "**********"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("mesgw ")


def test_run_with_an_unusable_outbox_path_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    conf = tmp_path / "g.toml"
    conf.write_text(f"[outbox]\npath = '{blocker}/outbox.db'\n[logging]\nformat = 'json'\n")
    assert main(["run", "--config", str(conf)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"mesgw: outbox.path {blocker}/outbox.db: cannot open:")


def test_run_with_the_api_port_taken_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "g.toml"
        conf.write_text(
            f"[gateway]\nshutdown_timeout_s = 5\n[api]\nport = {port}\n"
            f"[outbox]\npath = '{tmp_path}/outbox.db'\n[mqtt]\nport = {port}\n"
            "[logging]\nformat = 'json'\n"
        )
        assert main(["run", "--config", str(conf)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"mesgw: api: cannot listen on 127.0.0.1:{port}:"), err
