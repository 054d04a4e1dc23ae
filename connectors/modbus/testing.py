"""Simulated Modbus devices for tests, benchmarks and trials: real pymodbus servers.

`ModbusSimulator` is a pymodbus server (TCP, RTU framing over TCP, or RTU on a serial line)
holding one or more unit ids, each with its own holding/input registers, coils and discrete
inputs. It counts every request it receives, and can misbehave the ways field devices do:
stay silent, answer for the wrong unit, answer twice, answer short, or refuse a range of
addresses (exception 2). `NullModem` wires two pseudo-terminals back to back so RTU on a
serial line can run without hardware. `Readings` collects what a device emits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from common.net import free_port
from connectors.modbus.address import FUNCTION_CODES, Table
from connectors.modbus.codec import encode
from connectors.modbus.config import ModbusConnector
from connectors.sample import Link, Reading, Sample
from connectors.tags import TagConfig

_WRITE_CODES = {"hr": 16, "ir": 4, "coil": 15, "di": 2}


@dataclass(frozen=True)
class Unit:
    """The memory of one simulated device: table sizes and refused ranges."""

    registers: int = 1000  # holding and input registers 0..registers-1
    bits: int = 1024  # coils and discrete inputs 0..bits-1 (a multiple of 16)
    # (table, start, count) register ranges that do not exist: reading them gives exception 2
    holes: tuple[tuple[Literal["hr", "ir"], int, int], ...] = ()


@dataclass(frozen=True)
class Received:
    unit: int
    function_code: int
    address: int
    count: int


@dataclass
class Misbehaviour:
    """Faults to inject into answers; change them while the server runs."""

    silent: bool = False  # accept connections, answer nothing
    wrong_unit: int | None = None  # answer with this unit id instead of the one asked
    duplicate: bool = False  # send every answer twice (a stale second copy)
    short: bool = False  # answer one register fewer than asked


def _blocks(size: int, holes: list[tuple[int, int]]) -> list[SimData]:
    """SimData covering 0..size-1 except the holes (absent addresses are refused)."""
    blocks: list[SimData] = []
    at = 0
    for start, count in sorted(holes):
        if start > at:
            blocks.append(_block(at, start - at))
        at = max(at, start + count)
    if at < size:
        blocks.append(_block(at, size - at))
    return blocks


def _block(address: int, count: int) -> SimData:
    return SimData(address=address, count=count, values=0, datatype=DataType.REGISTERS)


def _device(unit_id: int, unit: Unit) -> SimDevice:
    if any(table in ("coil", "di") for table, _, _ in unit.holes):
        raise ValueError("holes are supported in register tables only")
    # pymodbus' separate bit tables are addressed in bits; one list covers the table.
    bits = [SimData(address=0, values=[False] * unit.bits, datatype=DataType.BITS)]
    return SimDevice(
        id=unit_id,
        simdata=(
            bits,
            [SimData(address=0, values=[False] * unit.bits, datatype=DataType.BITS)],
            _blocks(unit.registers, [(s, c) for t, s, c in unit.holes if t == "hr"]),
            _blocks(unit.registers, [(s, c) for t, s, c in unit.holes if t == "ir"]),
        ),
    )


class ModbusSimulator:
    """A pymodbus server simulating `units` (unit id → memory); counts what it receives."""

    def __init__(
        self,
        units: Mapping[int, Unit] | Iterable[int] = (1,),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        framer: Literal["socket", "rtu"] = "socket",
        serial_port: str | None = None,
        baudrate: int = 19200,
        parity: str = "E",
    ) -> None:
        self.units: dict[int, Unit] = (
            dict(units) if isinstance(units, Mapping) else {u: Unit() for u in units}
        )
        self.host = host
        self.port = port
        self.framer = FramerType.RTU if framer == "rtu" else FramerType.SOCKET
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.parity = parity
        self.received: list[Received] = []
        self.record = True
        self.fault = Misbehaviour()
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    @property
    def address(self) -> str:
        return self.serial_port or f"{self.host}:{self.port}"

    def requests(self, unit: int | None = None) -> int:
        """Requests received (for `unit`, or all)."""
        return sum(1 for r in self.received if unit is None or r.unit == unit)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("already running")
        if not self.port and self.serial_port is None:
            self.port = free_port()
        # Device 0 answers for any unit id not configured; its answers are suppressed below,
        # so an absent unit stays silent as on a real bus instead of raising in pymodbus.
        devices = [_device(u, unit) for u, unit in self.units.items()]
        if 0 not in self.units:
            devices.append(_device(0, Unit(registers=1, bits=16)))
        hooks: dict[str, Any] = {"trace_packet": self._packet, "trace_pdu": self._pdu}
        if self.serial_port is not None:
            self._server = ModbusSerialServer(
                devices,
                framer=FramerType.RTU,
                port=self.serial_port,
                baudrate=self.baudrate,
                parity=self.parity,
                **hooks,
            )
        else:
            self._server = ModbusTcpServer(
                devices, framer=self.framer, address=(self.host, self.port), **hooks
            )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    async def __aenter__(self) -> ModbusSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def set_registers(
        self, table: Table, address: int, registers: list[int], unit: int | None = None
    ) -> None:
        await self._set(table, address, registers, unit)

    async def set_bits(
        self, table: Table, address: int, bits: list[bool], unit: int | None = None
    ) -> None:
        await self._set(table, address, bits, unit)

    async def set_value(
        self,
        address: int,
        value: bool | int | float | str,
        data_type: str,
        order: str = "ABCD",
        *,
        table: Table = "hr",
        length: int | None = None,
        unit: int | None = None,
    ) -> list[int]:
        """Write a typed value as the device would hold it; returns the registers."""
        registers = encode(value, data_type, order, length)
        await self._set(table, address, registers, unit)
        return registers

    async def _set(
        self, table: Table, address: int, values: list[int] | list[bool], unit: int | None
    ) -> None:
        if self._server is None:
            raise RuntimeError("not running")
        unit_id = next(iter(self.units)) if unit is None else unit
        code = _WRITE_CODES[table]
        result = await self._server.context.async_setValues(unit_id, code, address, values)
        if result is not None:
            raise ValueError(f"cannot set {table}:{address}+{len(values)}: {result!r}")

    def _pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            if self.record and pdu.function_code in FUNCTION_CODES.values():
                seen = Received(pdu.dev_id, pdu.function_code, pdu.address, pdu.count)
                self.received.append(seen)
        elif self.fault.short and getattr(pdu, "registers", None):
            pdu.registers = pdu.registers[:-1]
        return pdu

    def _packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        at = 6 if self.framer == FramerType.SOCKET and self.serial_port is None else 0
        if self.fault.silent or data[at] not in self.units:
            return b""  # the transport writes nothing: no answer at all
        if self.fault.wrong_unit is not None and at:
            # (an RTU frame's CRC covers the unit id, so only MBAP frames are rewritten)
            data = data[:at] + bytes([self.fault.wrong_unit]) + data[at + 1 :]
        if self.fault.duplicate:
            data = data + data
        return data


class NullModem:
    """Two pseudo-terminals wired back to back: a serial line between two programs."""

    def __init__(self) -> None:
        self._fds: list[int] = []
        self.ports: tuple[str, str] = ("", "")
        self._masters: tuple[int, int] = (-1, -1)

    async def __aenter__(self) -> NullModem:
        m1, s1 = os.openpty()
        m2, s2 = os.openpty()
        self._fds = [m1, s1, m2, s2]
        # Keep the slave ends open here too: a master reads EIO once no slave is open.
        for fd in (s1, s2):
            tty.setraw(fd)
        for fd in (m1, m2):
            os.set_blocking(fd, False)
        self._masters = (m1, m2)
        self.ports = (os.ttyname(s1), os.ttyname(s2))
        loop = asyncio.get_running_loop()
        loop.add_reader(m1, self._copy, m1, m2)
        loop.add_reader(m2, self._copy, m2, m1)
        return self

    @staticmethod
    def _copy(src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except BlockingIOError:
            return
        except OSError:
            return  # the other side closed its port for a moment
        with contextlib.suppress(BlockingIOError):
            os.write(dst, data)

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._masters:
            loop.remove_reader(fd)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class Readings:
    """Collects what a device emits; waits for conditions on it."""

    def __init__(self) -> None:
        self.items: list[Reading] = []
        self.batches: list[list[Reading]] = []
        self._changed = asyncio.Event()

    async def __call__(self, batch: Sequence[Reading]) -> None:
        self.batches.append(list(batch))
        self.items += batch
        self._changed.set()

    def samples(self, tag: str | None = None) -> list[Sample]:
        return [r for r in self.items if isinstance(r, Sample) and (tag is None or r.tag == tag)]

    def latest(self, tag: str) -> Sample:
        return self.samples(tag)[-1]

    def links(self) -> list[Link]:
        return [r for r in self.items if isinstance(r, Link)]

    async def wait(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


def connector_for(sim: ModbusSimulator | None = None, **kw: Any) -> ModbusConnector:
    """A connector for `sim` (TCP unless given otherwise) with quick test timings."""
    spec: dict[str, Any] = {
        "type": "modbus",
        "host": "127.0.0.1",
        "timeout_s": 0.5,
        "poll_interval_s": 0.1,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
    }
    if sim is not None:
        spec["port"] = sim.port
    spec.update(kw)
    if spec.get("transport") == "rtu":
        spec.pop("host", None)
    return ModbusConnector.model_validate(spec)


def tag_config(address: str, **kw: Any) -> TagConfig:
    """A `value` tag at `address`, with any other TagConfig keys."""
    return TagConfig.model_validate({"role": "value", "address": address, **kw})
