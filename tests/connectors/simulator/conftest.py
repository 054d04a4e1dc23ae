"""Plain protocol clients reading the simulated line the way the gateway's tag config says to.

Nothing here uses the gateway's connectors: the line is what they are tested against, so it is
checked with asyncua's and pymodbus' own clients and the Modbus codec.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client
from pymodbus.client import AsyncModbusTcpClient

from connectors.modbus import codec
from connectors.simulator import SimConfig

Value = bool | int | float | str


def line_config(*machines: dict[str, Any], **top: Any) -> SimConfig:
    """A line on free ports; each machine gets area/line defaults."""
    return SimConfig.model_validate(
        {
            "opcua": {"port": 0},
            "modbus": {"port": 0},
            "machines": [{"area": "packaging", "line": "line-1", **m} for m in machines],
            **top,
        }
    )


@asynccontextmanager
async def opcua_client(url: str) -> AsyncIterator[Client]:
    client = Client(url, timeout=2)
    async with client:
        yield client


async def read_opcua(client: Client, address: str) -> ua.DataValue:
    """Read a `nsu=<uri>;s=<id>` node: the namespace index is looked up, as a client must."""
    uri, _, ident = address.removeprefix("nsu=").partition(";s=")
    index = await client.get_namespace_index(uri)
    value: ua.DataValue = await client.get_node(f"ns={index};s={ident}").read_data_value()
    return value


@asynccontextmanager
async def modbus_client(host: str, port: int, **kwargs: Any) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(host, port=port, **kwargs)
    assert await client.connect(), f"cannot connect to {host}:{port}"
    try:
        yield client
    finally:
        client.close()


async def read_modbus(client: AsyncModbusTcpClient, unit: int, tag: dict[str, Any]) -> Value:
    """Read one gateway tag (`hr:100`, `hr:14.1`, `coil:3`…) and decode it with the codec."""
    table, _, where = tag["address"].partition(":")
    address, _, bit = where.partition(".")
    start = int(address)
    if table in ("coil", "di"):
        read = client.read_coils if table == "coil" else client.read_discrete_inputs
        response = await read(start, count=1, device_id=unit)
        assert not response.isError(), response
        return bool(response.bits[0])
    count = 1 if bit else codec.register_count(tag["type"], tag.get("length"))
    read = client.read_holding_registers if table == "hr" else client.read_input_registers
    response = await read(start, count=count, device_id=unit)
    assert not response.isError(), response
    if bit:
        return codec.bit(response.registers[0], int(bit))
    return codec.decode(
        response.registers, tag["type"], tag.get("order", "ABCD"), tag.get("length")
    )


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until `predicate()` holds; fail the test after `timeout_s`."""
    for _ in range(int(timeout_s / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not within {timeout_s} s")


class Probe:
    """The helpers above, handed to tests as the `probe` fixture."""

    line_config = staticmethod(line_config)
    opcua_client = staticmethod(opcua_client)
    read_opcua = staticmethod(read_opcua)
    modbus_client = staticmethod(modbus_client)
    read_modbus = staticmethod(read_modbus)
    eventually = staticmethod(eventually)


@pytest.fixture
def probe() -> type[Probe]:
    return Probe
