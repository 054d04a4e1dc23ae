"""The Modbus TCP client: frames against a real pymodbus server and a raw socket peer."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pymodbus.exceptions import ConnectionException, ModbusIOException

from connectors.modbus.codec import encode
from connectors.modbus.tcp import TcpClient
from connectors.modbus.testing import ModbusSimulator, Unit
from gateway.testing import free_port

Start = Callable[..., Awaitable[ModbusSimulator]]


async def test_reads_every_table_and_exception_answers(simulator: Start) -> None:
    sim = await simulator({1: Unit(holes=(("hr", 50, 2),))})
    await sim.set_registers("hr", 0, encode(123_456, "uint32"))
    await sim.set_registers("ir", 10, [7, 8])
    await sim.set_bits("coil", 3, [True, False, True])
    await sim.set_bits("di", 0, [False, True])
    client = TcpClient(sim.host, sim.port, timeout=1.0)
    assert await client.connect() and client.connected
    hr = await client.read_holding_registers(0, count=2, device_id=1)
    assert (hr.isError(), hr.function_code, hr.payload) == (False, 3, struct.pack(">I", 123_456))
    assert (await client.read_input_registers(10, count=2, device_id=1)).registers == [7, 8]
    assert (await client.read_coils(3, count=3, device_id=1)).bits[:3] == [True, False, True]
    assert (await client.read_discrete_inputs(0, count=2, device_id=1)).bits[:2] == [False, True]
    refused = await client.read_holding_registers(50, count=2, device_id=1)
    assert (refused.isError(), refused.function_code, refused.exception_code) == (True, 0x83, 2)
    client.close()
    assert not client.connected
    with pytest.raises(ConnectionException):
        await client.read_holding_registers(0, count=2, device_id=1)


async def test_no_answer_and_no_server(simulator: Start) -> None:
    sim = await simulator()
    sim.fault.silent = True
    client = TcpClient(sim.host, sim.port, timeout=0.2)
    assert await client.connect()
    with pytest.raises(ModbusIOException, match=r"no answer within 0\.2 s"):
        await client.read_holding_registers(0, count=1, device_id=1)
    client.close()
    assert not await TcpClient("127.0.0.1", free_port(), timeout=0.5).connect()


@pytest.fixture
async def peer() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """A raw TCP peer answering each request with `answer(request)` in the chunks given."""
    servers: list[asyncio.Server] = []

    async def start(answer: Callable[[bytes], list[bytes]], close: bool = False) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await reader.readexactly(12)
            for chunk in answer(request):
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.02)
            if close:
                writer.close()
            else:
                await reader.read()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()


def _answer(request: bytes, unit: int | None = None, registers: tuple[int, ...] = (5,)) -> bytes:
    tid, _, _, asked, function = struct.unpack(">HHHBB", request[:8])
    data = struct.pack(f">{len(registers)}H", *registers)
    unit = asked if unit is None else unit
    return struct.pack(">HHHBBB", tid, 0, 3 + len(data), unit, function, len(data)) + data


async def test_an_answer_in_pieces_is_put_together(peer: Callable[..., Awaitable[int]]) -> None:
    def pieces(request: bytes) -> list[bytes]:
        frame = _answer(request, registers=(1, 2, 3))
        return [frame[:5], frame[5:10], frame[10:]]

    seen: list[bytes] = []

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending:
            seen.append(data)
        return data

    client = TcpClient("127.0.0.1", await peer(pieces), timeout=1.0, trace_packet=trace)
    assert await client.connect()
    answer = await client.read_holding_registers(0, count=3, device_id=1)
    assert answer.registers == [1, 2, 3]
    # The trace sees what has come so far, from the frame's start (as pymodbus passes it).
    assert [len(s) for s in seen] == [5, 10, 15]
    client.close()


async def test_an_answer_from_another_unit_or_a_closed_connection_is_no_answer(
    peer: Callable[..., Awaitable[int]],
) -> None:
    client = TcpClient("127.0.0.1", await peer(lambda r: [_answer(r, unit=9)]), timeout=1.0)
    assert await client.connect()
    with pytest.raises(ModbusIOException, match="answer from unit 9, not 1"):
        await client.read_holding_registers(0, count=1, device_id=1)
    client.close()
    client = TcpClient("127.0.0.1", await peer(lambda r: [], close=True), timeout=1.0)
    assert await client.connect()
    with pytest.raises(ModbusIOException, match="connection closed by"):
        await client.read_holding_registers(0, count=1, device_id=1)
    assert not client.connected
