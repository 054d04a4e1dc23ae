"""Configuration: every error names the file and the key; env and secrets override the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.simulator.config import load_sim_config
from connectors.simulator.gateway_config import gateway_machines, render_toml
from gateway.config import load_config, redacted
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
[gateway]
id = "gw-1"
site = "plant"
"""

MACHINES = """
[[machines]]
id = "m0"
area = "a"
line = "l"
connector = { type = "synthetic" }

[[machines]]
id = "m1"
area = "a"
line = "l"
connector = { type = "modbus", host = "plc", unit = 1 }

[[machines]]
id = "m2"
area = "a"
line = "l"
connector = { type = "opcua", endpoint = "opc.tcp://plc:4840" }
[machines.tags.good]
role = "good_count"
address = "ns=2;s=Good"
width = WIDTH
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_example_configs_are_valid(tmp_path: Path) -> None:
    settings = load_config(ROOT / "deploy" / "examples" / "gateway.toml")
    assert settings.machines
    # The demo's settings take their machines from the simulated line, as tools/demo does.
    line = load_sim_config(ROOT / "deploy" / "examples" / "simulator.toml")
    demo = (ROOT / "deploy" / "examples" / "demo.toml").read_text()
    path = write(tmp_path, demo + render_toml(gateway_machines(line)))
    settings = load_config(path)
    assert [m.id for m in settings.machines] == ["filler-1", "capper-1", "labeler-1", "packer-1"]
    assert settings.orders.schedule_csv is not None
    assert (ROOT / settings.orders.schedule_csv).is_file()


def test_error_names_file_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + MACHINES.replace("WIDTH", "24"))
    assert problems(path) == [f"{path}: machines[2].tags.good.width: must be one of 16, 32, 64"]


def test_every_error_is_reported(tmp_path: Path) -> None:
    text = MINIMAL.replace('"gw-1"', '"GW 1"') + "[mqtt]\nport = 0\ncolour = 'red'\n"
    found = problems(write(tmp_path, text + MACHINES.replace("WIDTH", "24")))
    keys = sorted(p.split(": ")[1] for p in found)
    assert keys == ["gateway.id", "machines[2].tags.good.width", "mqtt.colour", "mqtt.port"]
    assert any(p.endswith("mqtt.colour: unknown key") for p in found)


def test_counter_without_width_is_rejected(tmp_path: Path) -> None:
    text = MINIMAL + MACHINES.replace("width = WIDTH", "")
    [problem] = problems(write(tmp_path, text))
    assert "machines[2].tags.good: a counter needs width (16, 32, 64) or modulus" in problem


def test_unknown_connector_type(tmp_path: Path) -> None:
    text = MINIMAL + MACHINES.replace("WIDTH", "32").replace('"modbus"', '"profinet"')
    [problem] = problems(write(tmp_path, text))
    assert problem.startswith(f"{tmp_path / 'gateway.toml'}: machines[1].connector")


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}: file not found"]
    [problem] = problems(write(tmp_path, "[gateway\n"))
    assert "invalid TOML" in problem and "line 1" in problem


def test_env_overrides_one_key_and_is_named_in_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL + "[mqtt]\nhost = 'from-file'\nport = 1884\n")
    monkeypatch.setenv("MESGW_MQTT__HOST", "from-env")
    settings = load_config(path)
    assert (settings.mqtt.host, settings.mqtt.port) == ("from-env", 1884)
    monkeypatch.setenv("MESGW_MQTT__PORT", "x")
    [problem] = problems(path)
    assert problem.startswith("env MESGW_MQTT__PORT: mqtt.port:")


def test_secrets_from_file_and_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    path = write(tmp_path, MINIMAL + f"[mqtt]\nusername = 'gw'\npassword_file = '{secret}'\n")
    settings = load_config(path)
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "store__password").write_text("dbpass")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    settings = load_config(path)
    assert settings.store.password is not None
    assert settings.store.password.get_secret_value() == "dbpass"


def test_unreadable_secret_file_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[mqtt]\nusername='u'\npassword_file = '/nonexistent/p'\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}: mqtt: cannot read secret file /nonexistent/p")


def test_show_redacts_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = MINIMAL + "[store]\ndsn = 'postgresql://rec:dbsecret@db:5432/mes'\n"
    monkeypatch.setenv("MESGW_MQTT__USERNAME", "gw")
    monkeypatch.setenv("MESGW_MQTT__PASSWORD", "mqttsecret")
    shown = str(redacted(load_config(write(tmp_path, text))))
    assert "dbsecret" not in shown and "mqttsecret" not in shown
    assert "postgresql://rec:***@db:5432/mes" in shown


def test_duplicate_machine(tmp_path: Path) -> None:
    text = MINIMAL + MACHINES.replace("WIDTH", "32").replace('id = "m1"', 'id = "m0"')
    [problem] = problems(write(tmp_path, text))
    assert "duplicate machine id 'm0'" in problem
    # Also on another line: samples, rules state and commands name a machine by id alone.
    other_line = MACHINES.replace("WIDTH", "32").replace('id = "m1"', 'id = "m0"')
    other_line = other_line.replace('line = "l"', 'line = "l2"', 1)
    [problem] = problems(write(tmp_path, MINIMAL + other_line))
    assert "duplicate machine id 'm0'" in problem


def test_show_redacts_a_password_in_the_dsn_query(tmp_path: Path) -> None:
    text = MINIMAL + "[store]\ndsn = 'postgresql://rec@db/mes?password=qs3cret&sslmode=require'\n"
    shown = redacted(load_config(write(tmp_path, text)))
    assert shown["store"]["dsn"] == "postgresql://rec@db/mes?password=***&sslmode=require"
