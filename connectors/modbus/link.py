"""The wire to one Modbus device: pymodbus' async clients for TCP, RTU on a serial line, and
RTU frames over TCP (serial-to-Ethernet gateways), with pymodbus' own logging routed to the
device that caused it.

pymodbus logs every failed connect and every unanswered request at warning/error level.
The connector reports those as link state changes, once; so while a device's task runs, the
lines pymodbus logs from it are handed to that device (which keeps the last one as the
reason it reports, and logs it at debug) instead of going to the journal on every retry.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from connectors.modbus.tcp import TcpClient

if TYPE_CHECKING:
    from connectors.modbus.config import ModbusConnector

Client = AsyncModbusTcpClient | AsyncModbusSerialClient | TcpClient

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target did not respond",
}


def exception_text(code: int) -> str:
    return f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"


class LibraryListener(Protocol):
    def library_line(self, level: int, message: str) -> None: ...


library_listener: ContextVar[LibraryListener | None] = ContextVar(
    "mesgw_modbus_library_listener", default=None
)


class _RouteToDevice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        listener = library_listener.get()
        if listener is None:
            return True
        listener.library_line(record.levelno, record.getMessage())
        return False


_PYMODBUS_LOGGER = "pymodbus.logging"
if not any(isinstance(f, _RouteToDevice) for f in logging.getLogger(_PYMODBUS_LOGGER).filters):
    logging.getLogger(_PYMODBUS_LOGGER).addFilter(_RouteToDevice())


class _RegisterBytes:
    """A read-registers answer that keeps its data as the bytes that came (`payload`,
    big-endian registers): the decoder compares and unpacks those. pymodbus' own answer
    decodes one register at a time into a list; here `registers` is only built when asked
    for, and the answer's text (pymodbus formats every answer for its debug log, logged or
    not) leaves the values out."""

    function_code: int
    dev_id: int
    transaction_id: int
    payload: bytes = b""

    @property
    def registers(self) -> list[int]:
        return list(struct.unpack(f">{len(self.payload) // 2}H", self.payload))

    @registers.setter
    def registers(self, values: Sequence[int]) -> None:
        self.payload = struct.pack(f">{len(values)}H", *values)

    def decode(self, data: bytes) -> None:
        size = data[0]
        if size >= len(data):
            raise ModbusIOException(
                f"byte_count {size} > length of packet {len(data)}",
                function_code=self.function_code,
            )
        self.payload = bytes(data[1 : 1 + size])

    def __str__(self) -> str:
        return (
            f"{type(self).__name__}(dev_id={self.dev_id}, "
            f"transaction_id={self.transaction_id}, registers={len(self.payload) // 2})"
        )


class HoldingRegisterBytes(_RegisterBytes, ReadHoldingRegistersResponse):  # type: ignore[misc]
    pass


class InputRegisterBytes(_RegisterBytes, ReadInputRegistersResponse):  # type: ignore[misc]
    pass


def register_bytes(response: object) -> bytes:
    """The registers of an answer as big-endian bytes (as on the wire)."""
    payload = getattr(response, "payload", None)
    if isinstance(payload, bytes):
        return payload
    registers: Sequence[int] = getattr(response, "registers")  # noqa: B009
    return struct.pack(f">{len(registers)}H", *registers)


def where(connector: ModbusConnector) -> str:
    """Where the device is, for logs and messages: `host:port` or the serial port."""
    if connector.transport == "rtu":
        assert connector.serial is not None
        return connector.serial.port
    return f"{connector.host}:{connector.port}"


def make_client(
    connector: ModbusConnector,
    *,
    trace_packet: Callable[[bool, bytes], bytes] | None = None,
    trace_pdu: Callable[[bool, Any], Any] | None = None,
) -> Client:
    """A client that neither retries nor reconnects on its own (the caller does): our own
    for Modbus TCP (`connectors.modbus.tcp`), pymodbus' for RTU, on a line or over TCP."""
    common: dict[str, Any] = {
        "timeout": connector.timeout_s,
        "retries": 0,
        "reconnect_delay": 0,  # 0 turns pymodbus' own reconnect loop off
        "reconnect_delay_max": 0,
        "trace_packet": trace_packet,
        "trace_pdu": trace_pdu,
    }
    if connector.transport == "rtu":
        serial = connector.serial
        assert serial is not None, "validated by ModbusConnector"
        client: AsyncModbusSerialClient | AsyncModbusTcpClient = AsyncModbusSerialClient(
            serial.port,
            framer=FramerType.RTU,
            baudrate=serial.baudrate,
            bytesize=serial.bytesize,
            parity=serial.parity,
            stopbits=serial.stopbits,
            **common,
        )
    elif connector.transport == "tcp":
        assert connector.host is not None, "validated by ModbusConnector"
        return TcpClient(
            connector.host, connector.port, timeout=connector.timeout_s, trace_packet=trace_packet
        )
    else:
        assert connector.host is not None, "validated by ModbusConnector"
        client = AsyncModbusTcpClient(
            connector.host, port=connector.port, framer=FramerType.RTU, **common
        )
    client.register(HoldingRegisterBytes)
    client.register(InputRegisterBytes)
    return client
