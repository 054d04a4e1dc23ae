"""A simulated production line: machines behind real OPC UA and Modbus TCP servers.

Southbound test equipment for the connectors and the rules: counters that wrap and reset,
PackML states, reasons, an order tag, random and scripted stops, connection drops, and an
exact record of what happened (`Truth`) to compare the gateway's results with.
"""

from connectors.simulator.config import SimConfig, load_sim_config
from connectors.simulator.gateway_config import Endpoint, gateway_machines, render_toml
from connectors.simulator.line import SimulatedLine
from connectors.simulator.scenario import Scenario, load_scenario, parse_scenario
from connectors.simulator.truth import Truth

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
