"""Connection drops: the server stops answering for the time given, the machine goes on, and
the truth says what was made while nobody could see it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asyncua.client.client import Client
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from connectors.simulator import SimulatedLine, parse_scenario

CYCLE = 0.005


async def refused(host: str, port: int) -> bool:
    """True when nothing listens on the port (the TCP connect is refused)."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def test_modbus_drop_closes_the_server_of_the_machine_for_the_time_given(
    probe: Any,
) -> None:
    config = probe.line_config(
        {"id": "m1", "protocol": "modbus", "cycle_time_s": CYCLE, "unit": 1},
        {"id": "m2", "protocol": "modbus", "cycle_time_s": CYCLE, "unit": 2},
        {"id": "m3", "protocol": "modbus", "cycle_time_s": CYCLE, "port": 0},
    )
    run = parse_scenario({"steps": {"m1": [{"do": "run", "parts": 10}]}}, config, "test")
    async with SimulatedLine(config) as line:
        shared, own = line.endpoints["m1"], line.endpoints["m3"]
        m1 = next(e for e in line.gateway_machines() if e["id"] == "m1")
        async with probe.modbus_client(shared.host, shared.port, retries=0, timeout=0.5) as old:
            assert await probe.read_modbus(old, 1, m1["tags"]["good"]) == 0
            restored = await line.drop("m1", 0.6)
            assert await refused(shared.host, shared.port)
            assert not await refused(own.host, own.port)  # another server is not touched
            assert await unanswered(old)  # the open connection was closed
            await line.run_scenario(run)  # made while the server is down
            assert not restored.done()
            await restored
        async with probe.modbus_client(shared.host, shared.port) as client:
            assert await probe.read_modbus(client, 1, m1["tags"]["good"]) == 10

    drop = line.truth["m1"].drops[0]
    assert drop.end is not None and (drop.end - drop.start).total_seconds() >= 0.6
    assert (drop.mode, drop.made.total, drop.endpoint) == ("close", 10, shared_url(shared))
    assert line.truth["m2"].drops[0].made.total == 0  # the same server, so dropped too
    assert line.truth["m2"].drops[0].start == drop.start
    assert line.truth["m3"].drops == []


async def unanswered(client: AsyncModbusTcpClient) -> bool:
    """True when a read gets no answer at all (pymodbus gives up and raises)."""
    try:
        await client.read_holding_registers(0, count=2, device_id=1)
    except ModbusException:
        return True
    return False


def shared_url(endpoint: Any) -> str:
    return f"modbus-tcp://{endpoint.host}:{endpoint.port}"


async def test_silent_modbus_drop_keeps_the_connection_but_answers_nothing(probe: Any) -> None:
    config = probe.line_config({"id": "m", "protocol": "modbus", "cycle_time_s": CYCLE})
    async with SimulatedLine(config) as line:
        endpoint = line.endpoints["m"]
        async with probe.modbus_client(
            endpoint.host, endpoint.port, retries=0, timeout=0.3
        ) as client:
            restored = await line.drop("m", 1.0, mode="silent")
            assert not await refused(endpoint.host, endpoint.port)  # still listening
            assert await unanswered(client)
            await restored
        async with probe.modbus_client(endpoint.host, endpoint.port, timeout=1) as client:
            response = await client.read_holding_registers(0, count=2, device_id=1)
            assert not response.isError()
    drop = line.truth["m"].drops[0]
    assert drop.mode == "silent" and (drop.end - drop.start).total_seconds() >= 1.0  # type: ignore[operator]


async def test_opcua_drop_step_restarts_the_server_and_counts_what_was_made(probe: Any) -> None:
    config = probe.line_config(
        {"id": "filler", "protocol": "opcua", "cycle_time_s": CYCLE},
        {"id": "capper", "protocol": "opcua", "cycle_time_s": CYCLE},
    )
    steps = [
        {"do": "run", "parts": 3},
        {"do": "drop", "seconds": 1.5},
        {"do": "run", "parts": 20, "rejects": 2},
    ]
    scenario = parse_scenario({"steps": {"filler": steps}}, config, "test")
    async with SimulatedLine(config) as line:
        url = line.endpoints["filler"].url
        good = next(e for e in line.gateway_machines() if e["id"] == "filler")["tags"]["good"]
        async with probe.opcua_client(url) as old:
            running = asyncio.create_task(line.run_scenario(scenario))
            await probe.eventually(lambda: line.truth["filler"].made.total == 23)
            assert not running.done()  # the run is over, the drop is not
            with pytest.raises((ConnectionError, TimeoutError)):
                await probe.read_opcua(old, good["address"])
            with pytest.raises((ConnectionError, OSError, TimeoutError)):
                await Client(url, timeout=0.5).connect()
            await running
        async with probe.opcua_client(url) as client:
            assert (await probe.read_opcua(client, good["address"])).Value.Value == 21

    drop = line.truth["filler"].drops[0]
    assert drop.end is not None and (drop.end - drop.start).total_seconds() >= 1.5
    assert drop.made.as_dict() == {"good": 18, "reject": 2, "total": 20}
    assert line.truth["capper"].drops[0].made.total == 0  # one OPC UA server for both


async def test_stop_servers_until_start_servers(probe: Any) -> None:
    config = probe.line_config(
        {"id": "a", "protocol": "modbus"}, {"id": "b", "protocol": "modbus", "port": 0}
    )
    async with SimulatedLine(config) as line:
        endpoints = list(line.endpoints.values())
        await line.stop_servers()
        assert all([await refused(e.host, e.port) for e in endpoints])
        with pytest.raises(RuntimeError, match="start_servers"):
            await line.drop("a", 1.0)
        assert all(line.truth[m].drops[0].end is None for m in ("a", "b"))
        await line.start_servers()
        assert not any([await refused(e.host, e.port) for e in endpoints])
        assert all(line.truth[m].drops[0].end is not None for m in ("a", "b"))
