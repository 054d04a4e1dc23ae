"""A pymodbus TCP server serving the register maps of the Modbus machines given to it.

Machines may share a server (one port) on different unit ids or base addresses. Values are
encoded with the gateway's own codec (`connectors.modbus.codec`) into an image per unit; each
request copies the image into pymodbus' registers first, so a reply is always one consistent
snapshot. The tags are read-only: a write is refused with ILLEGAL ADDRESS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.modbus import codec
from connectors.simulator import layout
from connectors.simulator.config import MachineSpec
from connectors.simulator.machine import TagValue
from connectors.tags import ByteOrder

# Function code → table
_TABLE_OF = {1: "coil", 5: "coil", 15: "coil", 2: "di", 4: "ir"} | {
    fc: "hr" for fc in (3, 6, 16, 22, 23)
}
_BIT_TABLES = ("coil", "di")


class ModbusStation:
    def __init__(self, host: str, port: int, machines: list[tuple[MachineSpec, ByteOrder]]) -> None:
        self.host = host
        self.port = port
        self.machines = [spec.id for spec, _ in machines]
        self._maps = {spec.id: (spec, order, layout.modbus_tags(spec)) for spec, order in machines}
        # unit → table → address → register value (or bit)
        self._images: dict[int, dict[str, dict[int, int]]] = {}
        blocks: dict[int, tuple[list[SimData], list[SimData], list[SimData], list[SimData]]] = {}
        for spec, _ in machines:
            unit, base = spec.modbus_unit, spec.modbus_base
            self._images.setdefault(unit, {t: {} for t in ("hr", "ir", "coil", "di")})
            coils, inputs, holding, input_regs = blocks.setdefault(unit, ([], [], [], []))
            bits = dict(count=layout.BIT_SPAN, values=False, datatype=DataType.BITS)
            coils.append(SimData(base, **bits))  # type: ignore[arg-type]
            inputs.append(SimData(base, **bits))  # type: ignore[arg-type]
            span = layout.modbus_span(spec.order_length)
            holding.append(SimData(base, count=span, values=0, datatype=DataType.REGISTERS))
            input_regs.append(
                SimData(base, count=layout.IR_SPAN, values=0, datatype=DataType.REGISTERS)
            )
        self._devices = [
            SimDevice(unit, simdata=simdata, action=partial(self._serve, unit))
            for unit, simdata in blocks.items()
        ]
        self._server: ModbusTcpServer | None = None
        self._answering = asyncio.Event()
        self._answering.set()

    @property
    def endpoint(self) -> str:
        return f"modbus-tcp://{self.host}:{self.port}"

    async def setup(self) -> None:
        """Nothing to build ahead: the register image fills as machines publish."""

    async def publish(self, machine: str, values: Mapping[str, TagValue], ts: datetime) -> None:
        spec, order, tags = self._maps[machine]
        image = self._images[spec.modbus_unit]
        for tag in tags:
            if tag.bit is not None:
                continue  # a bit of the status word, which is written whole
            address = spec.modbus_base + tag.offset
            value = values[tag.name]
            if tag.table in _BIT_TABLES:
                image[tag.table][address] = int(bool(value))
                continue
            registers = codec.encode(
                value, tag.data_type, order if tag.ordered else "ABCD", tag.length
            )
            for i, register in enumerate(registers):
                image[tag.table][address + i] = register

    async def _serve(
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus' hook before every request: refuse writes, fill in the current values."""
        await self._answering.wait()  # a silent drop holds every request here
        if set_values is not None:
            return ExcCodes.ILLEGAL_ADDRESS
        table = _TABLE_OF[function_code]
        image = self._images[unit][table]
        if table in _BIT_TABLES:
            # Bits are packed 16 to a register, bit 0 first; start_address counts registers.
            for bit_address, bit in image.items():
                index, shift = divmod(bit_address, 16)
                word = registers[index - start_address]
                mask = 1 << shift
                registers[index - start_address] = word | mask if bit else word & ~mask
        else:
            for reg_address, value in image.items():
                registers[reg_address - start_address] = value
        return None

    async def start(self) -> None:
        server = ModbusTcpServer(self._devices, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:
            raise OSError(f"cannot listen on {self.host}:{self.port}: {err}") from err
        self._server = server

    async def stop(self) -> None:
        """Close the listener and every client connection."""
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    def silence(self) -> None:
        """Keep connections open but answer nothing, like a pulled cable."""
        self._answering.clear()

    def answer(self) -> None:
        """Answer again, the held requests first."""
        self._answering.set()
