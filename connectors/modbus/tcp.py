"""Modbus TCP reads on one asyncio connection: the poller's own client for `transport = "tcp"`.

pymodbus' client goes through a lock, a transaction manager, a framer, a decoder table, a
timeout task and debug lines formatted whether logged or not, for every request; polling
hundreds of devices a second, that machinery was most of the gateway's CPU. The poller has
one request in flight per connection, so this client is a protocol with one pending
future: a request is one `struct.pack` and one write, and the answer's frame (MBAP header,
then the PDU) is checked and handed over as its bytes (`Answer.payload`).

It offers what the poller and `mesgw modbus read` use of pymodbus' client (connect,
connected, close, the four reads with `count` and `device_id`), with pymodbus' errors: a
closed connection raises `ConnectionException`; no answer in time, an answer to another
transaction or unit, or the connection closing under a request raise `ModbusIOException`.
Received bytes go through `trace_packet` first as accumulated so far (as pymodbus does),
which is how the device notices stale or mismatched answers.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Final

from pymodbus.exceptions import ConnectionException, ModbusIOException

_REQUEST: Final = struct.Struct(
    ">HHHBBHH"
)  # tid, protocol 0, length 6, unit, function, start, count
_HEADER: Final = struct.Struct(">HHHBB")  # tid, protocol, length, unit, function
Trace = Callable[[bool, bytes], bytes]


class Answer:
    """A read's answer: its bytes, or the exception code the device answered with."""

    __slots__ = ("dev_id", "exception_code", "function_code", "payload", "transaction_id")

    def __init__(
        self, function_code: int, dev_id: int, tid: int, payload: bytes, exception_code: int = 0
    ) -> None:
        self.function_code = function_code
        self.dev_id = dev_id
        self.transaction_id = tid
        self.payload = payload
        self.exception_code = exception_code

    def isError(self) -> bool:
        return self.function_code > 0x80

    @property
    def registers(self) -> list[int]:
        return list(struct.unpack(f">{len(self.payload) // 2}H", self.payload))

    @property
    def bits(self) -> list[bool]:
        return [bool(byte >> i & 1) for byte in self.payload for i in range(8)]

    def __repr__(self) -> str:
        return (
            f"Answer(function_code={self.function_code}, dev_id={self.dev_id}, "
            f"transaction_id={self.transaction_id}, {len(self.payload)} bytes)"
        )


class _Protocol(asyncio.Protocol):
    def __init__(self, client: TcpClient) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(self, exc)


class TcpClient:
    """One Modbus TCP connection with at most one request in flight."""

    def __init__(
        self, host: str, port: int, *, timeout: float, trace_packet: Trace | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._trace = trace_packet
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._buffer = b""
        self._tid = 0
        self._pending: asyncio.Future[Answer] | None = None
        self._asked = (0, 0, 0)  # tid, unit, function of the request in flight

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def connect(self) -> bool:
        """Connect (a no-op when connected); False when it fails, the reason logged as
        pymodbus does, so that the device's library listener keeps it."""
        if self.connected:
            return True
        loop = asyncio.get_running_loop()
        protocol = _Protocol(self)
        try:
            async with asyncio.timeout(self.timeout):
                transport, _ = await loop.create_connection(lambda: protocol, self.host, self.port)
        except (OSError, TimeoutError) as err:
            from connectors.modbus.link import library_listener  # (link imports this module)

            reason = str(err) or f"no connection within {self.timeout:g} s"
            listener = library_listener.get()
            if listener is not None:
                listener.library_line(30, f"Failed to connect {reason}")
            return False
        self._transport = transport
        self._protocol = protocol
        self._buffer = b""
        self._tid = 0
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._protocol = None
        self._fail(ModbusIOException("connection closed"))

    async def read_holding_registers(self, address: int, *, count: int, device_id: int) -> Answer:
        return await self._read(3, address, count, device_id)

    async def read_input_registers(self, address: int, *, count: int, device_id: int) -> Answer:
        return await self._read(4, address, count, device_id)

    async def read_coils(self, address: int, *, count: int, device_id: int) -> Answer:
        return await self._read(1, address, count, device_id)

    async def read_discrete_inputs(self, address: int, *, count: int, device_id: int) -> Answer:
        return await self._read(2, address, count, device_id)

    async def _read(self, function: int, address: int, count: int, unit: int) -> Answer:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionException(f"not connected to {self.host}:{self.port}")
        self._tid = self._tid + 1 if self._tid < 65000 else 1
        frame = _REQUEST.pack(self._tid, 0, 6, unit, function, address, count)
        if self._trace is not None:
            frame = self._trace(True, frame)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending = future
        self._asked = (self._tid, unit, function)
        self._buffer = b""  # whatever came before belongs to no request of ours
        transport.write(frame)
        timer = loop.call_at(loop.time() + self.timeout, self._timed_out, future)
        try:
            return await future
        finally:
            timer.cancel()
            if self._pending is future:
                self._pending = None

    def _timed_out(self, future: asyncio.Future[Answer]) -> None:
        if not future.done():
            future.set_exception(ModbusIOException(f"no answer within {self.timeout:g} s"))

    def _fail(self, err: Exception) -> None:
        future, self._pending = self._pending, None
        if future is not None and not future.done():
            future.set_exception(err)

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is not self._protocol:
            return  # an old connection's end
        self._transport = None
        self._protocol = None
        self._fail(ModbusIOException(f"connection closed by {self.host}:{self.port}"))

    def _received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        if self._trace is not None:
            buffer = self._trace(False, buffer)
        self._buffer = buffer
        if len(buffer) < 9:
            return
        tid, _protocol, length, unit, function = _HEADER.unpack_from(buffer)
        end = 6 + length
        if len(buffer) < end:
            return
        self._buffer = buffer[end:]
        future = self._pending
        if future is None or future.done():
            return  # nobody asks any more (late, or extra): the device sees it in the trace
        asked_tid, asked_unit, _function = self._asked
        if tid != asked_tid:
            future.set_exception(ModbusIOException(f"answer to transaction {tid}, not {asked_tid}"))
        elif asked_unit and unit != asked_unit:
            future.set_exception(ModbusIOException(f"answer from unit {unit}, not {asked_unit}"))
        elif function & 0x80:
            future.set_result(Answer(function, unit, tid, b"", buffer[8]))
        elif buffer[8] > length - 3:
            future.set_exception(ModbusIOException(f"malformed answer (function {function})"))
        else:
            # Another function's answer is handed over too: the device says what is wrong.
            future.set_result(Answer(function, unit, tid, buffer[9 : 9 + buffer[8]]))
