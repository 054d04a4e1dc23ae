"""The `api` and `orders` configuration sections: secure defaults, errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import EXIT_CONFIG, EXIT_OK, main
from gateway.config import ApiSection, is_loopback, load_config
from gateway.errors import ConfigError

TOKEN = "s3cret-token-0123456789"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def config_errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_defaults_are_loopback_without_token() -> None:
    api = ApiSection()
    assert (api.enabled, api.host, api.port, api.token) == (True, "127.0.0.1", 8080, None)
    settings = load_config(None)
    assert settings.orders.command_max_age_s == 60.0
    assert settings.orders.schedule_csv is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.5.5.5", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("gateway.plant.local", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_network_address_without_token_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[api]\nhost = "0.0.0.0"\n')
    assert config_errors(path) == [
        f"{path}: api: host 0.0.0.0 is reachable from the network: set token or token_file "
        "(without one anyone there could start and stop orders)"
    ]


def test_network_address_with_token_file(tmp_path: Path) -> None:
    secret = tmp_path / "api.token"
    secret.write_text(TOKEN + "\n")
    path = write(tmp_path, f'[api]\nhost = "0.0.0.0"\ntoken_file = "{secret}"\n')
    settings = load_config(path)
    assert settings.api.token is not None
    assert settings.api.token.get_secret_value() == TOKEN


def test_network_address_with_token_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESGW_API__TOKEN", TOKEN)
    path = write(tmp_path, '[api]\nhost = "10.1.2.3"\n')
    assert load_config(path).api.host == "10.1.2.3"


def test_disabled_api_needs_no_token(tmp_path: Path) -> None:
    path = write(tmp_path, '[api]\nenabled = false\nhost = "0.0.0.0"\n')
    assert load_config(path).api.enabled is False


def test_short_token_and_unreadable_token_file(tmp_path: Path) -> None:
    assert config_errors(write(tmp_path, '[api]\ntoken = "short"\n'))[0].endswith(
        "api: token must be at least 16 characters"
    )
    missing = tmp_path / "missing.token"
    problems = config_errors(write(tmp_path, f'[api]\ntoken_file = "{missing}"\n'))
    assert problems[0].endswith(
        f"api: cannot read secret file {missing}: No such file or directory"
    )


def test_orders_section_keys_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "[orders]\ncommand_max_age_s = -1\nschedule = 'x.csv'\n")
    assert config_errors(path) == [
        f"{path}: orders.command_max_age_s: Input should be greater than or equal to 0",
        f'{path}: orders.schedule: unknown key; did you mean "schedule_csv"?',
    ]


def test_config_show_hides_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESGW_API__TOKEN", TOKEN)
    path = write(tmp_path, '[api]\nport = 9090\n[orders]\nschedule_csv = "/srv/plan.csv"\n')
    assert main(["config", "show", "--config", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert TOKEN not in out
    shown = json.loads(out)
    assert shown["api"]["port"] == 9090 and shown["api"]["token"] == "**********"
    assert shown["orders"]["schedule_csv"] == "/srv/plan.csv"


def test_config_check_reports_the_api_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[api]\nhost = "0.0.0.0"\n')
    assert main(["config", "check", str(path)]) == EXIT_CONFIG
    assert capsys.readouterr().err.startswith(f"{path}: api: host 0.0.0.0 is reachable")
