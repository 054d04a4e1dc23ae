"""A PLC tag as configured: the role it plays for the rules and how a connector reads it.

Shared by every connector (and composed into the gateway's `[[machines]]` by
`gateway.config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from common.config import Section

TagRole = Literal[
    "total_count", "good_count", "reject_count", "state", "reason", "order", "speed", "value"
]
DataType = Literal[
    "bool",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "string",
]
# Modbus word/byte order of a multi-register value, written as the bytes of a 32-bit value
# A B C D (A most significant) in the order they arrive: ABCD = big-endian throughout.
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]


class TagConfig(Section):
    """A PLC tag, the role it plays, and how to read it.

    `address` is a node id for OPC UA (`ns=2;s=Line1.Good` or `nsu=urn:…;s=…`) and
    `<table>:<n>` for Modbus (`hr:100`, `ir:5`, `coil:3`, `di:7`, `hr:100.3` for bit 3).
    """

    role: TagRole
    address: str = Field(min_length=1)
    # Modbus decoding; OPC UA values arrive typed and ignore type/order/length.
    type: DataType | None = None
    order: ByteOrder | None = Field(None, description="override of the connector's byte_order")
    length: int | None = Field(None, ge=1, le=250, description="string length in bytes")
    scale: float = 1.0
    offset: float = 0.0
    poll_interval_s: float | None = Field(
        None, gt=0, description="Modbus poll group / OPC UA poll mode; default: the connector's"
    )
    # OPC UA subscription per tag; default: the connector's.
    sampling_interval_s: float | None = Field(None, ge=0)
    deadband: float | None = Field(None, ge=0, description="absolute deadband")
    # Counters
    width: Literal[16, 32, 64] | None = None
    modulus: int | None = Field(None, ge=2)
    resettable: bool = True

    @model_validator(mode="after")
    def _counter(self) -> TagConfig:
        is_counter = self.role.endswith("_count")
        if is_counter and self.width is None and self.modulus is None:
            raise ValueError("a counter needs width (16, 32, 64) or modulus")
        if not is_counter and (self.width is not None or self.modulus is not None):
            raise ValueError("width/modulus apply to counter roles only")
        if self.width is not None and self.modulus is not None:
            raise ValueError("give width or modulus, not both")
        if self.type == "string" and self.length is None:
            raise ValueError("a string tag needs length (bytes)")
        return self

    @property
    def counter_modulus(self) -> int | None:
        """The value at which the counter wraps to 0, for counter roles."""
        if self.modulus is not None:
            return self.modulus
        return 1 << self.width if self.width is not None else None
