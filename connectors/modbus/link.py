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
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

if TYPE_CHECKING:
    from connectors.modbus.config import ModbusConnector

Client = AsyncModbusTcpClient | AsyncModbusSerialClient

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
    """A pymodbus client that neither retries nor reconnects on its own: the caller does."""
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
        return AsyncModbusSerialClient(
            serial.port,
            framer=FramerType.RTU,
            baudrate=serial.baudrate,
            bytesize=serial.bytesize,
            parity=serial.parity,
            stopbits=serial.stopbits,
            **common,
        )
    assert connector.host is not None, "validated by ModbusConnector"
    framer = FramerType.RTU if connector.transport == "rtu_over_tcp" else FramerType.SOCKET
    return AsyncModbusTcpClient(connector.host, port=connector.port, framer=framer, **common)
