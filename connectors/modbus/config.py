"""The Modbus connector's configuration (`connector = { type = "modbus", … }` of a machine)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from common.config import Section
from connectors.tags import ByteOrder


class ModbusSerial(Section):
    """A serial line (RS-485 / RS-232) for Modbus RTU."""

    port: str = Field(min_length=1, description="device, e.g. /dev/ttyUSB0")
    baudrate: int = Field(19200, ge=300, le=921_600)
    parity: Literal["N", "E", "O"] = Field("E", description="the Modbus serial line default")
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class ModbusConnector(Section):
    """A Modbus device: TCP, RTU on a serial line, or RTU frames over TCP (serial gateways).

    Tag addresses are `hr:N`, `ir:N`, `coil:N`, `di:N`, `hr:N.BIT` counted from
    `address_base`, or classic 4xxxx/3xxxx/1xxxx/0xxxx (always 1-based).
    """

    type: Literal["modbus"]
    transport: Literal["tcp", "rtu", "rtu_over_tcp"] = "tcp"
    host: str | None = Field(None, min_length=1, description="tcp and rtu_over_tcp")
    port: int = Field(502, ge=1, le=65535)
    serial: ModbusSerial | None = Field(None, description="transport rtu")
    unit: int = Field(1, ge=0, le=255, description="unit (slave) id")
    address_base: Literal[0, 1] = Field(
        0, description="0: hr:0 is the first register on the wire; 1: hr:1 is"
    )
    byte_order: ByteOrder = Field("ABCD", description="of multi-register values; per-tag order")
    poll_interval_s: float = Field(1.0, ge=0.01, le=86_400, description="default per tag")
    timeout_s: float = Field(1.0, gt=0, le=60, description="per request")
    retries: int = Field(1, ge=0, le=10, description="after a timeout, on a fresh connection")
    max_gap: int = Field(16, ge=0, le=124, description="unused registers read to merge requests")
    max_registers: int = Field(125, ge=1, le=125, description="per request")
    max_bits: int = Field(2000, ge=1, le=2000, description="per request")
    one_request_per_tag: bool = Field(False, description="for devices that refuse merged reads")
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _transport(self) -> ModbusConnector:
        if self.transport == "rtu":
            if self.serial is None:
                raise ValueError('transport "rtu" needs serial (port, baudrate, parity, ...)')
            if self.host is not None:
                raise ValueError('host applies to tcp and rtu_over_tcp; "rtu" uses serial.port')
            if not 1 <= self.unit <= 247:
                raise ValueError("unit on a serial line is 1..247 (0 is broadcast: no answer)")
        else:
            if self.host is None:
                raise ValueError(f'transport "{self.transport}" needs host')
            if self.serial is not None:
                raise ValueError('serial applies to transport "rtu" only')
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self
