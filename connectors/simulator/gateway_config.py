"""The gateway configuration that reads the simulated line: `[[machines]]` with connector and tags.

Generated from the line's own configuration and tag layout, so mapping the simulated line is
copy-paste and tests never describe the line twice. Only keys that `gateway.config` accepts
are used (a test loads the result with `load_config`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from connectors.simulator import layout
from connectors.simulator.config import CounterSpec, MachineSpec, SimConfig

# The gateway's state table preset for each numbering the simulator speaks.
STATE_TABLES = {"packtags": "packml-packtags", "opc30060": "packml-opc30060"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one machine is served."""

    protocol: Literal["opcua", "modbus"]
    host: str
    port: int
    unit: int | None = None  # Modbus

    @property
    def url(self) -> str:
        if self.protocol == "opcua":
            return f"opc.tcp://{self.host}:{self.port}/"
        return f"modbus-tcp://{self.host}:{self.port}/{self.unit}"


def configured_endpoint(config: SimConfig, spec: MachineSpec) -> Endpoint:
    """The endpoint the configuration fixes; ValueError if the port is chosen at start."""
    key = config.server_key(spec)
    if key.port == 0:
        raise ValueError(
            f"{spec.id} is served on a free port chosen at start: give fixed ports, or take"
            " the gateway machines from the running line (SimulatedLine.gateway_machines)"
        )
    unit = spec.modbus_unit if spec.protocol == "modbus" else None
    return Endpoint(spec.protocol, config.host(spec), key.port, unit)


def _wrap(counter: CounterSpec) -> dict[str, int]:
    if counter.modulus is not None:
        return {"modulus": counter.modulus}
    return {"width": counter.width or 32}


def _opcua(config: SimConfig, spec: MachineSpec, endpoint: Endpoint) -> dict[str, Any]:
    tags: dict[str, dict[str, Any]] = {}
    for tag in layout.opcua_tags(spec):
        entry: dict[str, Any] = {
            "role": tag.role,
            "address": layout.node_id(config.opcua.namespace, spec.id, tag.name),
        }
        if tag.name in spec.counters:
            entry |= _wrap(spec.counters[tag.name])
        tags[tag.name] = entry
    # The simulated server offers no security (test equipment); the connector wants it said.
    connector = {"type": "opcua", "endpoint": endpoint.url, "security_policy": "None"}
    return {"connector": connector, "tags": tags}


def _modbus(config: SimConfig, spec: MachineSpec, endpoint: Endpoint) -> dict[str, Any]:
    order = config.byte_order(spec)
    tags: dict[str, dict[str, Any]] = {}
    for tag in layout.modbus_tags(spec):
        if not tag.export:
            continue
        entry: dict[str, Any] = {
            "role": tag.role,
            "address": layout.modbus_address(tag, spec.modbus_base),
            "type": tag.data_type,
        }
        if tag.table in ("hr", "ir"):
            # Said outright for the status word's bits too: BADC/DCBA would swap its bytes.
            entry["order"] = order if tag.ordered else "ABCD"
        if tag.length is not None:
            entry["length"] = tag.length
        if tag.name in spec.counters:
            entry |= _wrap(spec.counters[tag.name])
        tags[tag.name] = entry
    connector = {
        "type": "modbus",
        "host": endpoint.host,
        "port": endpoint.port,
        "unit": spec.modbus_unit,
    }
    return {"connector": connector, "tags": tags}


def gateway_machines(
    config: SimConfig, endpoints: Mapping[str, Endpoint] | None = None
) -> list[dict[str, Any]]:
    """One gateway `[[machines]]` entry per simulated machine, as plain data.

    `endpoints` (from a running line) supplies ports chosen at start; without it the ports
    come from the configuration and must be fixed.
    """
    machines = []
    for spec in config.machines:
        endpoint = endpoints[spec.id] if endpoints else configured_endpoint(config, spec)
        build = _opcua if spec.protocol == "opcua" else _modbus
        machine: dict[str, Any] = {
            "id": spec.id,
            "area": spec.area,
            "line": spec.line,
            "ideal_cycle_time_s": spec.cycle_time_s,
        }
        machine["state_table"] = STATE_TABLES[spec.states]
        machines.append(machine | build(config, spec, endpoint))
    return machines


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def render_toml(machines: list[dict[str, Any]]) -> str:
    """`[[machines]]` blocks to paste into a gateway configuration."""
    lines: list[str] = []
    for machine in machines:
        lines.append("[[machines]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in machine.items() if k != "tags"]
        lines += ["", "[machines.tags]"]
        lines += [f"{name} = {_toml_value(tag)}" for name, tag in machine["tags"].items()]
        lines.append("")
    return "\n".join(lines)
