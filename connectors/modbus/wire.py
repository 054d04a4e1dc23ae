"""The connection a device polls over: its own TCP connection, or a shared serial line.

A TCP device (Modbus TCP, or RTU frames over TCP) owns its connection. Devices on one
serial port are unit ids on one RS-485 line: they share one port (the operating system lets
one program open it once) and the line carries one request at a time, so they share a
`SerialLine`, take turns under its lock, and a device's retry or reconnect happens inside its
own turn. A device that stops answering makes the others on its line wait for its timeouts:
that is the bus, not the gateway; give slow or often-absent units a longer poll interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from connectors.modbus.link import Client, make_client

if TYPE_CHECKING:
    from connectors.modbus.config import ModbusConnector

Trace = Callable[[bool, bytes], bytes]
ClientFactory = Callable[..., Client]


class Wire:
    """One device's own connection."""

    def __init__(
        self, connector: ModbusConnector, trace: Trace, factory: ClientFactory = make_client
    ) -> None:
        self.connector = connector
        self.lock = asyncio.Lock()  # uncontended here; a serial line's turns
        self.client: Client | None = None
        self._trace = trace
        self._factory = factory

    @property
    def connected(self) -> bool:
        return self.client is not None and bool(self.client.connected)

    def take_turn(self, trace: Trace) -> None:
        """Route the line's traffic to the device now holding the lock (serial lines)."""

    async def open(self, *, fresh: bool = False) -> bool:
        """Connect if not connected (`fresh`: drop the connection and connect anew)."""
        if self.connected and not fresh:
            return True
        self.close()
        client = self._factory(self.connector, trace_packet=self._traced)
        if not await client.connect():
            client.close()
            return False
        self.client = client
        return True

    def _traced(self, sending: bool, data: bytes) -> bytes:
        return self._trace(sending, data)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def release(self, user: object) -> None:
        """The device is done with the wire."""
        self.close()


class SerialLine(Wire):
    """A serial port shared by the devices (unit ids) on it."""

    def __init__(self, connector: ModbusConnector, factory: ClientFactory = make_client) -> None:
        super().__init__(connector, lambda sending, data: data, factory)
        self.users: set[object] = set()

    def take_turn(self, trace: Trace) -> None:
        self._trace = trace

    def release(self, user: object) -> None:
        self.users.discard(user)
        if not self.users:
            self.close()
            if _LINES.get(_key(self.connector)) is self:
                del _LINES[_key(self.connector)]


_LINES: dict[str, SerialLine] = {}


def _key(connector: ModbusConnector) -> str:
    assert connector.serial is not None
    return connector.serial.port


def wire_for(
    user: object, connector: ModbusConnector, trace: Trace, factory: ClientFactory = make_client
) -> Wire:
    """The wire for a device: its own, or the serial line it shares with the others on it."""
    if connector.transport != "rtu":
        return Wire(connector, trace, factory)
    line = _LINES.get(_key(connector))
    if line is None:
        line = _LINES[_key(connector)] = SerialLine(connector, factory)
    elif (
        line.connector.serial != connector.serial or line.connector.timeout_s != connector.timeout_s
    ):
        raise ValueError(
            f"serial port {_key(connector)} is configured twice with different settings "
            "(serial, timeout_s): the devices on one line must agree"
        )
    line.users.add(user)
    return line
