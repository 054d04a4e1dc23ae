"""A simulated production line: machines behind real OPC UA and Modbus TCP servers.

Southbound test equipment for the connectors and the rules: counters that wrap and reset,
PackML states, reasons, an order tag, random and scripted stops, connection drops, and an
exact record of what happened (`Truth`) to compare the gateway's results with.
"""

import importlib
from typing import Any

# Loaded on first use: the servers pull in asyncua and pymodbus, which every `mesgw` command
# would otherwise pay for at start-up.
_WHERE = {
    "SimConfig": "config",
    "load_sim_config": "config",
    "Endpoint": "gateway_config",
    "gateway_machines": "gateway_config",
    "render_toml": "gateway_config",
    "SimulatedLine": "line",
    "Scenario": "scenario",
    "load_scenario": "scenario",
    "parse_scenario": "scenario",
    "Truth": "truth",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "Endpoint",
    "Scenario",
    "SimConfig",
    "SimulatedLine",
    "Truth",
    "gateway_machines",
    "load_scenario",
    "load_sim_config",
    "parse_scenario",
    "render_toml",
]
