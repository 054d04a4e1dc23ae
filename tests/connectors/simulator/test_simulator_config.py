"""The simulated line's configuration and scenario files: what is accepted, what is refused."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.simulator import gateway_machines, load_scenario, load_sim_config, render_toml
from connectors.simulator.behaviour import next_order
from connectors.simulator.config import SimConfig
from connectors.simulator.scenario import parse_scenario
from connectors.simulator.states import OPC30060, PACKTAGS, state_code, state_name
from gateway.config import format_errors, load_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "examples" / "simulator.toml"
SCENARIOS = sorted((ROOT / "deploy" / "examples" / "scenarios").glob("*.toml"))


def machine(**extra: Any) -> dict[str, Any]:
    return {"id": "m1", "area": "a", "line": "l", "protocol": "modbus", **extra}


def write(tmp_path: Path, text: str, name: str = "sim.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_sim_config(path)
    return info.value.problems


def test_state_numberings_follow_packtags_v3_and_opc_30060() -> None:
    assert (PACKTAGS["undefined"], PACKTAGS["execute"], PACKTAGS["aborted"]) == (0, 6, 9)
    assert (PACKTAGS["held"], PACKTAGS["complete"]) == (11, 17)
    assert (OPC30060["stopped"], OPC30060["execute"], OPC30060["aborted"]) == (0, 4, 8)
    assert (OPC30060["held"], OPC30060["unholding"]) == (15, 16)
    assert "undefined" not in OPC30060
    assert sorted(PACKTAGS.values()) == list(range(18))
    assert sorted(OPC30060.values()) == list(range(17))
    assert state_code("opc30060", "suspended") == 12 and state_name("packtags", 5) == "suspended"
    assert state_code("packtags", 999) == 999 and state_name("packtags", 999) is None
    with pytest.raises(ValueError, match="no state 'undefined' in opc30060"):
        state_code("opc30060", "undefined")


def test_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[modbus]
colour = "red"

[[machines]]
id = "m1"
area = "a"
line = "l"
protocol = "opcua"
unit = 3
counters = { good = { width = 24 } }

[[machines]]
id = "m2"
area = "a"
line = "l"
protocol = "modbus"
counters = { good = { width = 16, initial = 70000 }, scrap = {} }
order = "WO-123456789012345"
order_length = 8

[[machines.random_stops]]
state = "napping"
reasons = [1]
probability = 0.1
min_s = 5
max_s = 1
""",
    )
    found = problems(path)
    assert f"{path}: modbus.colour: unknown key" in found
    assert f"{path}: machines[0].counters.good.width: must be one of 16, 32, 64" in found
    assert f"{path}: machines[1].counters.good: initial must be below the wrap value 65536" in (
        found
    )
    assert f"{path}: machines[1].counters.scrap.[key]: must be one of good, reject, total" in found
    assert f"{path}: machines[1].random_stops[0]: min_s must not exceed max_s" in found


def one(**extra: Any) -> list[str]:
    """The problems of a line of one machine, formatted as load_sim_config does."""
    try:
        SimConfig.model_validate({"machines": [machine(**extra)]})
    except ValidationError as exc:
        return format_errors(exc, Path("sim.toml"))
    raise AssertionError("accepted")


def test_machine_level_rules() -> None:
    assert one(protocol="opcua", unit=3, base=10) == [
        "sim.toml: machines[0]: unit, base apply to modbus machines only"
    ]
    assert one(order="WO-123456789", order_length=8) == [
        "sim.toml: machines[0]: order 'WO-123456789' is longer than order_length (8 bytes)"
    ]
    assert one(base=65530) == [
        "sim.toml: machines[0]: base leaves no room for the machine's registers below 65536"
    ]
    assert one(states="opc30060", random_stops=[stop(state="undefined")]) == [
        "sim.toml: machines[0]: no state 'undefined' in opc30060 (one of "
        + ", ".join(OPC30060)
        + ")"
    ]
    assert one(counters={"good": {"width": 16, "modulus": 1000}}) == [
        "sim.toml: machines[0].counters.good: give width or modulus, not both"
    ]


def stop(**extra: Any) -> dict[str, Any]:
    return {"reasons": [1], "probability": 0.1, "min_s": 1, "max_s": 2, **extra}


def test_line_level_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[opcua]
port = 5020

[[machines]]
id = "m1"
area = "a"
line = "l"
protocol = "modbus"

[[machines]]
id = "m1"
area = "a"
line = "l"
protocol = "modbus"
unit = 1
base = 20

[[machines]]
id = "m3"
area = "a"
line = "l"
protocol = "modbus"
unit = 2
base = 20

[[machines]]
id = "m4"
area = "a"
line = "l"
protocol = "opcua"
""",
    )
    assert problems(path) == [
        f"{path}: machines[1].id: duplicate of machines[0]",
        f"{path}: machines[1].base: registers 20..43 overlap machines[0] on the same server"
        " and unit",
        f"{path}: machines[3].port: 5020 is given to OPC UA and Modbus",
    ]


def test_counter_types_follow_width_or_modulus() -> None:
    config = SimConfig.model_validate(
        {
            "machines": [
                machine(
                    counters={
                        "good": {"modulus": 65536},
                        "reject": {"modulus": 65537},
                        "total": {"width": 64},
                    }
                ),
                machine(id="m2", base=100),
            ]
        }
    )
    counters = config.machines[0].counters
    assert [counters[n].data_type for n in ("good", "reject", "total")] == [
        "uint16",
        "uint32",
        "uint64",
    ]
    assert config.machines[1].counters["good"].width == 32  # the default: good + reject, 32 bits


def test_scenario_errors_name_the_step_and_key(tmp_path: Path) -> None:
    config = SimConfig.model_validate(
        {
            "machines": [
                machine(counters={"good": {"width": 16}, "total": {"width": 16}}),
                machine(id="m2", protocol="opcua", states="opc30060"),
            ]
        }
    )
    path = write(
        tmp_path,
        """
[steps]
m1 = [
  { do = "run", parts = 5, rejects = 6 },
  { do = "jump" },
  { do = "set", counter = "good", value = 65536 },
  { do = "reset", counter = "reject" },
  { do = "order", order = "a-very-long-order-number" },
  { do = "run", seconds = 1.0, rejects = 3, cycle_s = 0.5 },
  { do = "fault", seconds = 2 },
]
m2 = [
  { do = "stop", seconds = 1, state = "undefined" },
  { do = "drop", seconds = 1, mode = "silent" },
]
nobody = [{ do = "idle", seconds = 1 }]
""",
        "scenario.toml",
    )
    with pytest.raises(ConfigError) as info:
        load_scenario(path, config)
    found = info.value.problems
    assert f"{path}: steps.m1[0]: rejects exceed parts" in found
    assert any(p.startswith(f"{path}: steps.m1[1]: Input tag 'jump'") for p in found)
    assert f"{path}: steps.m1[6].reason: required key is missing" in found
    assert len(found) == 3  # the shape is checked before the line is asked

    fixed = path.read_text().replace('{ do = "run", parts = 5, rejects = 6 },', "")
    fixed = fixed.replace('{ do = "jump" },', "").replace(
        "seconds = 2 }", "seconds = 2, reason = 1 }"
    )
    path.write_text(fixed)
    with pytest.raises(ConfigError) as info:
        load_scenario(path, config)
    assert info.value.problems == [
        f"{path}: steps.m1[0].value: must be below the wrap value 65536",
        f"{path}: steps.m1[1].counter: m1 has no reject counter (it has good, total)",
        f"{path}: steps.m1[2].order: order 'a-very-long-order-number' is longer than"
        " order_length (16 bytes)",
        f"{path}: steps.m1[3].rejects: exceed the parts made in seconds at the cycle time",
        f"{path}: steps.m2[0].state: no state 'undefined' in opc30060 (one of "
        + ", ".join(OPC30060)
        + ")",
        f"{path}: steps.m2[1].mode: silent drops are Modbus only; OPC UA drops close the server",
        f"{path}: steps.nobody: no such machine in the line's configuration",
    ]


def test_next_order_counts_up_in_its_own_width() -> None:
    assert next_order("WO-1001", 16) == "WO-1002"
    assert next_order("WO-0099", 16) == "WO-0100"
    assert next_order("WO-9999", 16) == "WO-10000"
    assert next_order("WO-99", 5) == "WO-00"
    assert next_order("", 16) == "1"
    assert next_order("BATCH", 5) == "BATC1"


def gateway_file(tmp_path: Path, machines_toml: str) -> Path:
    return write(
        tmp_path,
        f'[gateway]\nid = "gw"\nsite = "plant"\n\n{machines_toml}',
        "gateway.toml",
    )


def test_example_line_and_scenarios_load_and_map_onto_a_valid_gateway_config(
    tmp_path: Path,
) -> None:
    config = load_sim_config(EXAMPLE)
    assert {m.protocol for m in config.machines} == {"opcua", "modbus"}
    assert len(config.machines) == 4
    assert SCENARIOS, "an example scenario ships beside the example line"
    for scenario in SCENARIOS:
        load_scenario(scenario, config)

    machines = gateway_machines(config)
    text = render_toml(machines)
    assert tomllib.loads(text) == {"machines": machines}
    settings = load_config(gateway_file(tmp_path, text))
    assert [m.id for m in settings.machines] == [m.id for m in config.machines]
    labeler = settings.machines[2]
    assert labeler.connector.type == "modbus"
    assert labeler.connector.port == 5020 and labeler.connector.unit == 1
    assert labeler.tags["good"].address == "hr:0" and labeler.tags["good"].order == "CDAB"
    assert labeler.tags["good"].width == 32 and labeler.tags["good"].type == "uint32"
    packer = settings.machines[3]
    assert (packer.connector.port, packer.connector.unit) == (5021, 2)  # type: ignore[union-attr]
    assert packer.tags["good"].modulus == 100000 and packer.tags["good"].type == "uint32"
    assert packer.tags["order"].address == "hr:116" and packer.tags["order"].length == 16
    assert packer.tags["faulted"].address == "hr:114.1"
    assert packer.tags["speed"].address == "ir:100"
    capper = settings.machines[1]
    assert capper.connector.type == "opcua"
    assert capper.tags["total"].address == "nsu=urn:mesgw:sim;s=capper-1.total"
    assert capper.tags["total"].width == 16
    assert capper.ideal_cycle_time_s == 0.6


def test_print_needs_fixed_ports() -> None:
    config = SimConfig.model_validate({"modbus": {"port": 0}, "machines": [machine()]})
    with pytest.raises(ValueError, match="free port chosen at start"):
        gateway_machines(config)


def test_scenario_from_python_data_is_checked_too() -> None:
    config = SimConfig.model_validate({"machines": [machine()]})
    scenario = parse_scenario({"steps": {"m1": [{"do": "run", "parts": 3}]}}, config, "inline")
    assert scenario.steps["m1"][0].do == "run"
    with pytest.raises(ConfigError, match=r"inline: steps.m1\[0\].parts: "):
        parse_scenario({"steps": {"m1": [{"do": "run", "parts": 0}]}}, config, "inline")
