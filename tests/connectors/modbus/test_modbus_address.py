"""Modbus addresses and tag layouts; configuration errors name the key at fault."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connectors.modbus.address import Address, AddressError, parse_address, tag_spec
from connectors.modbus.testing import tag_config
from gateway.config import TagConfig, load_config
from gateway.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "base", "expected"),
    [
        ("hr:100", 0, Address("hr", 100)),
        ("hr:100", 1, Address("hr", 99)),
        ("ir:0", 0, Address("ir", 0)),
        ("coil:3", 0, Address("coil", 3)),
        ("di:7", 1, Address("di", 6)),
        ("hr:100.3", 0, Address("hr", 100, 3)),
        ("IR:5.15", 0, Address("ir", 5, 15)),
        ("hr:65535", 0, Address("hr", 65535)),
        ("hr:65536", 1, Address("hr", 65535)),
        # classic Modicon numbering: always 1-based, whatever the base
        ("40001", 0, Address("hr", 0)),
        ("40101", 1, Address("hr", 100)),
        ("400001", 0, Address("hr", 0)),
        ("465536", 0, Address("hr", 65535)),
        ("30005", 0, Address("ir", 4)),
        ("10008", 0, Address("di", 7)),
        ("00004", 0, Address("coil", 3)),
        ("40001.7", 0, Address("hr", 0, 7)),
    ],
)
def test_addresses_parse(text: str, base: int, expected: Address) -> None:
    assert parse_address(text, base) == expected


@pytest.mark.parametrize(
    ("text", "base", "message"),
    [
        ("100", 0, "not a Modbus address"),
        ("xr:1", 0, "unknown table"),
        ("hr:0", 1, "outside 1..65536"),
        ("hr:65536", 0, "outside 0..65535"),
        ("hr:1.16", 0, "0..15"),
        ("coil:1.2", 0, "registers (hr, ir) only"),
        ("40000", 0, "outside 1..65536"),
        ("hr:-1", 0, "not a Modbus address"),
        ("ns=2;s=Good", 0, "not a Modbus address"),
    ],
)
def test_bad_addresses_say_why(text: str, base: int, message: str) -> None:
    with pytest.raises(AddressError, match=re.escape(message)):
        parse_address(text, base)


def test_tag_layouts_and_defaults() -> None:
    spec = tag_spec("good", TagConfig(role="good_count", address="hr:10", width=32))
    assert (spec.table, spec.start, spec.size, spec.type, spec.order) == (
        "hr",
        10,
        2,
        "uint32",
        "ABCD",
    )
    spec = tag_spec("state", tag_config("ir:3"), byte_order="CDAB")
    assert (spec.type, spec.size, spec.order) == ("uint16", 1, "CDAB")
    spec = tag_spec("speed", tag_config("hr:4", type="float64", order="DCBA"), byte_order="CDAB")
    assert (spec.size, spec.order) == (4, "DCBA")
    spec = tag_spec("order", tag_config("hr:20", type="string", length=7))
    assert spec.size == 4
    spec = tag_spec("door", tag_config("hr:1.3"))
    assert (spec.type, spec.bit, spec.size) == ("bool", 3, 1)
    spec = tag_spec("run", tag_config("coil:9"))
    assert (spec.table, spec.type, spec.size) == ("coil", "bool", 1)


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        (tag_config("coil:1", type="uint16"), "type: a coil or discrete input is bool"),
        (tag_config("di:1", order="CDAB"), "order: a coil or discrete input has no byte order"),
        (tag_config("hr:1.2", type="int16"), "type: a register bit is bool"),
        (tag_config("coil:1", scale=2.0), "scale:"),
        (tag_config("hr:1", type="uint16", length=4), "length: applies to string tags only"),
        (tag_config("hr:1", type="string", length=4, scale=0.1), "scale:"),
        (tag_config("hr:65535", type="uint32"), "address: uint32 at hr:65535 runs past"),
        (tag_config("hr:0", type="string", length=250), "length: needs 125 registers"),
    ],
)
def test_bad_tags_name_the_key(tag: TagConfig, message: str) -> None:
    with pytest.raises(AddressError, match=re.escape(message)):
        tag_spec("t", tag, max_registers=100)


def _config(tmp_path: Path, connector: str, tags: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[[machines]]
id = "press-1"
area = "a"
line = "l"
connector = {connector}
{tags}
"""
    )
    return path


def test_config_accepts_every_transport(tmp_path: Path) -> None:
    tags = """
[machines.tags.good]
role = "good_count"
address = "40001"
width = 32
[machines.tags.speed]
role = "speed"
address = "hr:3"
type = "int16"
order = "BADC"
poll_interval_s = 0.5
"""
    for connector in (
        '{ type = "modbus", host = "10.0.1.21" }',
        '{ type = "modbus", transport = "rtu_over_tcp", host = "gw.local", port = 4001, unit = 7 }',
        '{ type = "modbus", transport = "rtu", unit = 3, serial = { port = "/dev/ttyUSB0", '
        'baudrate = 9600, parity = "N", stopbits = 2 } }',
    ):
        settings = load_config(_config(tmp_path, connector, tags))
        modbus = settings.machines[0].connector
        assert modbus.type == "modbus"
        assert modbus.address_base == 0 and modbus.byte_order == "ABCD"
        assert modbus.max_registers == 125 and modbus.max_bits == 2000


def test_config_errors_name_the_tag_key(tmp_path: Path) -> None:
    tags = """
[machines.tags.good]
role = "good_count"
address = "hr:0"
width = 16
[machines.tags.run]
role = "value"
address = "coil:4"
type = "float32"
[machines.tags.fine]
role = "value"
address = "hr:7"
"""
    connector = '{ type = "modbus", host = "10.0.1.21", address_base = 1 }'
    path = _config(tmp_path, connector, tags)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == [
        f"{path}: machines[0].tags.good.address: 'hr:0' is outside 1..65536 (address_base 1)",
        f"{path}: machines[0].tags.run.type: a coil or discrete input is bool, not float32",
    ]


@pytest.mark.parametrize(
    ("connector", "message"),
    [
        ('{ type = "modbus" }', 'machines[0].connector: transport "tcp" needs host'),
        ('{ type = "modbus", transport = "rtu" }', 'transport "rtu" needs serial'),
        (
            '{ type = "modbus", transport = "rtu", host = "x", serial = { port = "/dev/ttyS0" } }',
            "host applies to tcp and rtu_over_tcp",
        ),
        (
            '{ type = "modbus", transport = "rtu", unit = 0, serial = { port = "/dev/ttyS0" } }',
            "unit on a serial line is 1..247",
        ),
        ('{ type = "modbus", host = "h", serial = { port = "/dev/ttyS0" } }', "serial applies"),
        ('{ type = "modbus", host = "h", max_registers = 126 }', "max_registers"),
        ('{ type = "modbus", host = "h", address_base = 2 }', "address_base: must be one of 0, 1"),
        ('{ type = "modbus", host = "h", byte_order = "ABDC" }', "byte_order: must be one of"),
        ('{ type = "modbus", host = "h", reconnect_min_s = 9, reconnect_max_s = 1 }', "exceed"),
    ],
)
def test_connector_errors(tmp_path: Path, connector: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, connector, ""))
    assert message in "\n".join(err.value.problems)


def test_machines_on_one_serial_port_must_agree_on_its_settings(tmp_path: Path) -> None:
    def machine(name: str, unit: int, baudrate: int) -> str:
        return f"""
[[machines]]
id = "{name}"
area = "a"
line = "l"
[machines.connector]
type = "modbus"
transport = "rtu"
unit = {unit}
serial = {{ port = "/dev/ttyUSB0", baudrate = {baudrate} }}
"""

    path = tmp_path / "gateway.toml"
    path.write_text(machine("press-1", 1, 19200) + machine("press-2", 2, 19200))
    assert len(load_config(path).machines) == 2  # one RS-485 line, two units: fine
    path.write_text(machine("press-1", 1, 19200) + machine("press-2", 2, 9600))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == [
        f"{path}: machines[1].connector.serial: shares serial port /dev/ttyUSB0 with machine "
        "'press-1' but not its serial settings and timeout_s"
    ]
