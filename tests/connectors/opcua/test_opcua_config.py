"""Node id syntax and the OPC UA connector's settings, as `mesgw config check` reports them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.opcua.nodeid import NodeAddress, parse_node_id
from gateway.config import OpcUaConnector, load_config
from gateway.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i=2258", NodeAddress("i", 2258)),
        ("ns=2;s=Line1.Good", NodeAddress("s", "Line1.Good", 2)),
        ("ns=3;s=a;b=c", NodeAddress("s", "a;b=c", 3)),
        (
            "nsu=urn:plant:filler;s=Counters.Good",
            NodeAddress("s", "Counters.Good", None, "urn:plant:filler"),
        ),
        ("nsu=http://acme.com/UA/;i=7", NodeAddress("i", 7, None, "http://acme.com/UA/")),
        (
            "ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a",
            NodeAddress("g", uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a"), 1),
        ),
        ("ns=4;b=AQID", NodeAddress("b", b"\x01\x02\x03", 4)),
    ],
)
def test_node_id_forms(text: str, expected: NodeAddress) -> None:
    parsed = parse_node_id(text)
    assert parsed == expected
    assert parse_node_id(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Line1.Good", "not an OPC UA node id"),
        ("ns=2;x=1", "not an OPC UA node id"),
        ("ns=70000;i=1", "namespace index must be 0..65535"),
        ("i=abc", "numeric node id must be"),
        ("i=4294967296", "numeric node id must be"),
        ("ns=2;s=", "string node id is empty"),
        ("ns=2;g=not-a-guid", "not a GUID"),
        ("ns=2;b=%%%", "not base64"),
        ("nsu=;s=x", "not an OPC UA node id"),
    ],
)
def test_bad_node_ids_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_node_id(text)


MACHINE = """
[[machines]]
id = "filler-1"
area = "a"
line = "l"
connector = {{ type = "opcua", endpoint = "opc.tcp://plc:4840"{extra} }}
[machines.tags.good]
role = "good_count"
address = "{address}"
width = 32
"""


def _load(tmp_path: Path, address: str = "ns=2;s=Good", extra: str = "") -> object:
    path = tmp_path / "gateway.toml"
    path.write_text(MACHINE.format(address=address, extra=extra))
    return load_config(path)


def test_config_error_names_the_tag_address_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, address="Counters.Good")
    [problem] = err.value.problems
    assert problem.startswith(f"{tmp_path / 'gateway.toml'}: machines[0].tags.good.address: ")
    assert "not an OPC UA node id" in problem


def test_modbus_addresses_are_not_checked_as_node_ids(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    text = MACHINE.format(address="hr:100", extra="").replace(
        '{ type = "opcua", endpoint = "opc.tcp://plc:4840" }', '{ type = "modbus", host = "plc" }'
    )
    path.write_text(text)
    assert load_config(path).machines[0].tags["good"].address == "hr:100"


def test_security_is_on_by_default(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    cfg = settings.machines[0].connector  # type: ignore[attr-defined]
    assert isinstance(cfg, OpcUaConnector)
    assert (cfg.security_policy, cfg.security_mode) == ("Basic256Sha256", "SignAndEncrypt")
    assert cfg.certificate == Path("/var/lib/mesgw/pki/client-cert.der")
    assert cfg.trust_dir == Path("/var/lib/mesgw/pki/trusted")


def test_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "opcua.pass"
    secret.write_text("s3cret\n")
    extra = f', username = "op", password_file = "{secret}"'
    cfg = _load(tmp_path, extra=extra).machines[0].connector  # type: ignore[attr-defined]
    assert cfg.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cfg)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"password": "x"}, "password given without username"),
        (
            {"security_policy": "None", "username": "op", "password": "x"},
            "need a security_policy",
        ),
        ({"security_policy": "Basic128Rsa15"}, "literal"),
        ({"reconnect_min_s": 10, "reconnect_max_s": 1}, "reconnect_min_s"),
        ({"watchdog_s": 1, "publishing_interval_s": 1}, "watchdog_s"),
        ({"endpoint": "http://plc:4840"}, "pattern"),
        ({"password_file": "/nonexistent/opcua.pass", "username": "op"}, "cannot read secret"),
    ],
)
def test_inconsistent_settings_are_refused(settings: dict[str, object], problem: str) -> None:
    base: dict[str, object] = {"type": "opcua", "endpoint": "opc.tcp://plc:4840"}
    with pytest.raises(ValidationError, match=problem):
        OpcUaConnector(**(base | settings))
