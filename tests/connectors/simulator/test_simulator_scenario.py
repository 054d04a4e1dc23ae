"""Scenarios produce exactly the truth they script, and the servers show it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.simulator import SimulatedLine, parse_scenario
from connectors.simulator.behaviour import free_run, run_steps
from connectors.simulator.config import MachineSpec, SimConfig
from connectors.simulator.machine import SimMachine, TagValue
from connectors.simulator.states import OPC30060, PACKTAGS
from connectors.simulator.truth import MachineTruth

CYCLE = 0.004


async def served(probe: Any, line: SimulatedLine, machine: str) -> dict[str, Any]:
    """Every tag of the machine's generated gateway entry, as its server answers it now."""
    entry = next(e for e in line.gateway_machines() if e["id"] == machine)
    endpoint = line.endpoints[machine]
    out: dict[str, Any] = {}
    if endpoint.protocol == "opcua":
        async with probe.opcua_client(endpoint.url) as client:
            for name, tag in entry["tags"].items():
                out[name] = (await probe.read_opcua(client, tag["address"])).Value.Value
    else:
        async with probe.modbus_client(endpoint.host, endpoint.port) as client:
            for name, tag in entry["tags"].items():
                out[name] = await probe.read_modbus(client, endpoint.unit, tag)
    return out


async def test_make_137_parts_advances_the_counters_by_exactly_137(probe: Any) -> None:
    config = probe.line_config(
        {"id": "filler", "protocol": "opcua", "cycle_time_s": CYCLE, "order": "WO-1"},
        {
            "id": "labeler",
            "protocol": "modbus",
            "cycle_time_s": CYCLE,
            "byte_order": "CDAB",
            "counters": {"total": {"initial": 1000}, "reject": {"initial": 20}},
        },
    )
    run = [{"do": "run", "parts": 137, "rejects": 5}]
    scenario = parse_scenario({"steps": {"filler": run, "labeler": run}}, config, "test")
    async with SimulatedLine(config) as line:
        await line.run_scenario(scenario)
        filler = await served(probe, line, "filler")
        labeler = await served(probe, line, "labeler")

    assert (filler["good"], filler["reject"]) == (132, 5)
    assert (labeler["total"], labeler["reject"]) == (1137, 25)
    for machine in ("filler", "labeler"):
        truth = line.truth[machine]
        assert truth.made.as_dict() == {"good": 132, "reject": 5, "total": 137}
        assert [i.kind for i in truth.intervals] == ["idle", "running", "idle"]
        running = truth.intervals[1]
        assert running.state == PACKTAGS["execute"] and running.reason == 0
        assert running.duration_s is not None and running.duration_s >= 137 * CYCLE * 0.99
        assert truth.stops == [] and truth.drops == [] and truth.counter_events == []
    assert line.truth["filler"].orders["WO-1"].total == 137
    assert line.truth["labeler"].orders[""].total == 137  # no order set: the "" key
    assert filler["state"] == labeler["state"] == PACKTAGS["idle"]
    assert line.truth.scenario_done is not None and line.truth.ended is not None


async def test_rollover_reset_set_and_order_change(probe: Any) -> None:
    config = probe.line_config(
        {
            "id": "capper",
            "protocol": "modbus",
            "cycle_time_s": CYCLE,
            "counters": {"good": {"width": 16, "initial": 65530}, "reject": {"width": 16}},
        },
        {
            "id": "filler",
            "protocol": "opcua",
            "cycle_time_s": CYCLE,
            "counters": {"total": {"modulus": 1000, "initial": 995}, "reject": {"width": 32}},
        },
    )
    steps = [
        {"do": "order", "order": "WO-1"},
        {"do": "run", "parts": 10},
        {"do": "reset"},
        {"do": "run", "parts": 3, "rejects": 1},
        {"do": "order", "order": "WO-2"},
        {"do": "set", "counter": "reject", "value": 7},
        {"do": "run", "parts": 4, "rejects": 4},
    ]
    scenario = parse_scenario({"steps": {"capper": steps, "filler": steps}}, config, "test")
    async with SimulatedLine(config) as line:
        await line.run_scenario(scenario)
        capper = await served(probe, line, "capper")
        filler = await served(probe, line, "filler")

    # 65530 + 10 good wraps at 65536 to 4; the reset zeroes both; then 2 good, 1 + 4 rejects.
    assert (capper["good"], capper["reject"]) == (2, 11)
    assert (filler["total"], filler["reject"]) == (7, 11)
    assert capper["order"] == filler["order"] == "WO-2"
    events = [(e.counter, e.kind, e.before, e.after) for e in line.truth["capper"].counter_events]
    assert events == [
        ("good", "wrap", 65535, 0),
        ("good", "reset", 4, 0),
        ("reject", "reset", 0, 0),
        ("reject", "set", 1, 7),
    ]
    events = [(e.counter, e.kind, e.before, e.after) for e in line.truth["filler"].counter_events]
    assert events == [
        ("total", "wrap", 999, 0),
        ("total", "reset", 5, 0),
        ("reject", "reset", 0, 0),
        ("reject", "set", 1, 7),
    ]
    for machine in ("capper", "filler"):
        truth = line.truth[machine]
        assert truth.made.as_dict() == {"good": 12, "reject": 5, "total": 17}
        assert {o: m.as_dict() for o, m in truth.orders.items()} == {
            "WO-1": {"good": 12, "reject": 1, "total": 13},
            "WO-2": {"good": 0, "reject": 4, "total": 4},
        }
        shown = capper if machine == "capper" else filler
        assert truth.counters == {name: shown[name] for name in truth.counters}


def faulted(truth: MachineTruth) -> bool:
    return truth.state is not None and truth.state.kind == "faulted"


async def test_stops_and_faults_are_served_and_recorded(probe: Any) -> None:
    config = probe.line_config(
        {"id": "filler", "protocol": "opcua", "cycle_time_s": CYCLE, "states": "opc30060"},
        {"id": "packer", "protocol": "modbus", "cycle_time_s": CYCLE},
    )
    steps = [
        {"do": "run", "parts": 3},
        {"do": "stop", "state": "held", "reason": 7, "seconds": 0.3},
        {"do": "fault", "reason": 42, "seconds": 0.6},
        {"do": "run", "parts": 2},
        {"do": "idle", "seconds": 0.1},
        {"do": "stop", "state": 3, "seconds": 0.1},
    ]
    scenario = parse_scenario({"steps": {"filler": steps, "packer": steps}}, config, "test")
    async with SimulatedLine(config) as line:
        running = asyncio.create_task(line.run_scenario(scenario))
        await probe.eventually(lambda: all(faulted(line.truth[m]) for m in ("filler", "packer")))
        filler = await served(probe, line, "filler")
        packer = await served(probe, line, "packer")
        await running

    assert (filler["state"], filler["reason"]) == (OPC30060["aborted"], 42)
    assert (packer["state"], packer["reason"]) == (PACKTAGS["aborted"], 42)
    assert filler["running"] is False and packer["running"] is False
    assert packer["faulted"] is True and packer["lamp_red"] is True
    assert filler["speed"] == packer["speed"] == 0.0
    for machine, states in (("filler", OPC30060), ("packer", PACKTAGS)):
        truth = line.truth[machine]
        kinds = [(i.kind, i.state, i.reason) for i in truth.intervals]
        assert kinds == [
            ("idle", states["idle"], 0),
            ("running", states["execute"], 0),
            ("stopped", states["held"], 7),
            ("faulted", states["aborted"], 42),
            ("running", states["execute"], 0),
            ("idle", states["idle"], 0),
            ("stopped", 3, 0),
            ("idle", states["idle"], 0),
        ]
        stops = truth.stops
        assert [(s.state_name, s.reason) for s in stops][:2] == [("held", 7), ("aborted", 42)]
        assert all(
            a.end == b.start for a, b in zip(truth.intervals, truth.intervals[1:], strict=False)
        )
        assert abs(stops[0].duration_s - 0.3) < 0.15  # type: ignore[operator]
        assert abs(stops[1].duration_s - 0.6) < 0.15  # type: ignore[operator]
        assert truth.made.total == 5


async def test_scenario_end_free_keeps_the_machine_running(probe: Any) -> None:
    config = probe.line_config({"id": "m", "protocol": "modbus", "cycle_time_s": CYCLE})
    scenario = parse_scenario(
        {"end": "free", "steps": {"m": [{"do": "run", "parts": 2}]}}, config, "test"
    )
    async with SimulatedLine(config) as line:
        await line.run_scenario(scenario)
        made = line.truth["m"].made.total
        await asyncio.sleep(20 * CYCLE)
        assert line.truth["m"].made.total > made >= 2
        assert line.truth["m"].state.kind == "running"  # type: ignore[union-attr]


class Recorder:
    """A sink that keeps every publication with the parts made so far: the whole history."""

    def __init__(self, truth: MachineTruth) -> None:
        self.truth = truth
        self.seen: list[tuple[int, tuple[tuple[str, TagValue], ...]]] = []

    async def publish(self, machine: str, values: Mapping[str, TagValue], ts: datetime) -> None:
        self.seen.append((self.truth.made.total, tuple(sorted(values.items()))))


def sim_machine(seed: int, **spec: Any) -> tuple[SimMachine, Recorder]:
    """A machine without a server: what it publishes is recorded instead."""
    machine_spec = MachineSpec.model_validate(
        {"id": "m", "area": "a", "line": "l", "protocol": "modbus", **spec}
    )
    truth = MachineTruth("m", "a", "l", "test")
    recorder = Recorder(truth)
    return SimMachine(machine_spec, seed, truth, recorder), recorder


async def no_drops(machine: str, seconds: float, mode: str) -> None:
    raise AssertionError("no drops scripted")


async def scripted_history(seed: int) -> list[Any]:
    machine, recorder = sim_machine(seed, cycle_time_s=0.0001)
    config = SimConfig.model_validate(
        {"machines": [{"id": "m", "area": "a", "line": "l", "protocol": "modbus"}]}
    )
    steps = [{"do": "run", "parts": 60, "rejects": 17}]
    scenario = parse_scenario({"steps": {"m": steps}}, config, "test")
    await machine.start()
    await run_steps(machine, scenario.steps["m"], no_drops)
    return recorder.seen


async def free_history(eventually: Any, seed: int, parts: int) -> list[Any]:
    machine, recorder = sim_machine(
        seed,
        cycle_time_s=0.0001,
        reject_ratio=0.2,
        order="WO-1",
        order_every_parts=25,
        reset_on_order=True,
        random_stops=[
            {"reasons": [1, 2, 3], "probability": 0.05, "min_s": 0.0001, "max_s": 0.0003},
            {
                "kind": "stop",
                "state": "suspended",
                "reasons": [9],
                "probability": 0.05,
                "min_s": 0.0001,
                "max_s": 0.0002,
            },
        ],
    )
    await machine.start()
    task = asyncio.create_task(free_run(machine))
    await eventually(lambda: machine.truth.made.total >= parts)
    task.cancel()
    # Cut where the last wanted part appeared, so two runs compare the same stretch.
    cut = next(i for i, (made, _) in enumerate(recorder.seen) if made == parts)
    return recorder.seen[: cut + 1]


async def test_rejects_follow_only_from_the_seed() -> None:
    first = await scripted_history(seed=1)
    assert first == await scripted_history(seed=1)
    assert first != await scripted_history(seed=2)
    rejects = [dict(values)["reject"] for _, values in first]
    assert rejects[-1] == 17 and first[-1][0] == 60


async def test_free_running_follows_only_from_the_seed(probe: Any) -> None:
    first = await free_history(probe.eventually, seed=5, parts=300)
    assert first == await free_history(probe.eventually, seed=5, parts=300)
    assert first != await free_history(probe.eventually, seed=6, parts=300)
    values = [dict(v) for _, v in first]
    assert {v["reason"] for v in values} >= {1, 2, 3, 9}  # both kinds of random stop came
    assert {v["state"] for v in values} >= {PACKTAGS["aborted"], PACKTAGS["suspended"]}
    assert {v["order"] for v in values} >= {"WO-1", "WO-2", "WO-12"}  # a new order per 25
    assert all(v["good"] + v["reject"] <= 25 for v in values)  # counters reset at each order
