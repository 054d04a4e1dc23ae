"""The gateway's own connectors, configured by `gateway_machines`, read what the line serves:
values after a scenario, and a link down and up again around a drop."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from connectors.modbus.device import ModbusDevice
from connectors.opcua.device import OpcUaDevice
from connectors.sample import Link, Reading, Sample
from connectors.simulator import SimulatedLine, parse_scenario, render_toml
from gateway.config import ModbusConnector, load_config

CYCLE = 0.01
# Faster than the defaults, so the test takes seconds; the generated keys are left as they are.
QUICK = {
    "modbus": {"poll_interval_s": 0.05, "timeout_s": 0.5, "reconnect_min_s": 0.05},
    "opcua": {
        "publishing_interval_s": 0.05,
        "sampling_interval_s": 0,
        "watchdog_s": 1.0,
        "reconnect_min_s": 0.05,
    },
}


def latest(readings: list[Reading], machine: str) -> dict[str, Any]:
    """The last good value of each tag of the machine."""
    out: dict[str, Any] = {}
    for r in readings:
        if isinstance(r, Sample) and r.machine == machine and r.quality == "good":
            out[r.tag] = r.value
    return out


def agrees(seen: dict[str, Any], expected: dict[str, Any]) -> bool:
    for name, value in seen.items():
        want = expected[name]
        if isinstance(want, float):
            if not math.isclose(float(value), want, rel_tol=1e-6):
                return False
        elif value != want:
            return False
    return True


async def test_connectors_read_the_line_through_the_generated_config(
    probe: Any, tmp_path: Path
) -> None:
    config = probe.line_config(
        {"id": "filler", "protocol": "opcua", "cycle_time_s": CYCLE, "states": "opc30060"},
        {
            "id": "labeler",
            "protocol": "modbus",
            "cycle_time_s": CYCLE,
            "byte_order": "CDAB",
            "counters": {"good": {"width": 16, "initial": 65500}, "total": {"width": 32}},
        },
        {
            "id": "packer",
            "protocol": "modbus",
            "cycle_time_s": CYCLE,
            "unit": 2,
            "base": 100,
            "byte_order": "BADC",
            "order_length": 9,
        },
    )
    steps = [
        {"do": "order", "order": "WO-11"},
        {"do": "run", "parts": 60, "rejects": 6},
        {"do": "fault", "reason": 42, "seconds": 1.5},
        {"do": "drop", "seconds": 1.0},
        {"do": "run", "parts": 20},
    ]
    scenario = parse_scenario(
        {"steps": {"filler": steps, "labeler": steps, "packer": steps[:2]}}, config, "test"
    )
    readings: list[Reading] = []

    async def emit(batch: Sequence[Reading]) -> None:
        readings.extend(batch)

    async with SimulatedLine(config) as line:
        machines = line.gateway_machines()
        for machine in machines:
            machine["connector"] |= QUICK[machine["connector"]["type"]]
        gateway = tmp_path / "gateway.toml"
        gateway.write_text('[gateway]\nsite = "test"\n\n' + render_toml(machines))
        settings = load_config(gateway)
        async with asyncio.TaskGroup() as group:
            devices = [
                group.create_task(
                    (
                        ModbusDevice(m.id, m.connector, m.tags)
                        if isinstance(m.connector, ModbusConnector)
                        else OpcUaDevice(m.id, m.connector, m.tags)  # type: ignore[arg-type]
                    ).run(emit),
                    name=f"test-{m.id}",
                )
                for m in settings.machines
            ]
            scripted = group.create_task(line.run_scenario(scenario))
            # Read while the faults are on, then after the drop, when the line went idle.
            for moment in ("faulted", "idle"):
                await probe.eventually(
                    lambda moment=moment: all(
                        line.truth[m].state.kind == moment  # type: ignore[union-attr]
                        for m in ("filler", "labeler")
                    ),
                    timeout_s=15,
                )
                await probe.eventually(
                    lambda moment=moment: (
                        all(
                            agrees(latest(readings, m), line.machines[m].values())
                            and len(latest(readings, m)) == len(e["tags"])
                            for m, e in zip(line.machines, machines, strict=True)
                        )
                        and line.truth["filler"].state.kind == moment
                    ),  # type: ignore[union-attr]
                    timeout_s=10,
                )
                if moment == "faulted":
                    filler = latest(readings, "filler")
                    assert (filler["state"], filler["reason"]) == (8, 42)  # OPC 30060 aborted
            await scripted
            for device in devices:
                device.cancel()

    labeler = latest(readings, "labeler")
    assert labeler["good"] == (65500 + line.truth["labeler"].made.good) % 65536 == 38
    assert labeler["total"] == 80 and labeler["order"] == "WO-11"
    assert latest(readings, "packer")["good"] == 54 and latest(readings, "packer")["speed"] == 0
    for machine in ("filler", "labeler"):
        links = [r.up for r in readings if isinstance(r, Link) and r.machine == machine]
        assert links[0] is True and False in links and links[-1] is True, (machine, links)
        assert line.truth[machine].drops[0].made.total == 20
    # The labeler's server serves the packer too, so the packer dropped with it.
    assert line.truth["packer"].drops[0].start == line.truth["labeler"].drops[0].start
