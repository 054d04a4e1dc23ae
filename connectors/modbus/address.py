"""Modbus tag addresses and what each tag occupies on the wire.

An address names a table and a number: `hr:100` (holding register), `ir:5` (input
register), `coil:3`, `di:7` (discrete input), and `hr:100.3` / `ir:5.3` for bit 3 (0 = least
significant) of a register. The number is counted from the connector's `address_base`: with
0 (the default) it is the address sent on the wire; with 1, `hr:1` is the first register on
the wire (what most device manuals list). The classic Modicon numbering is accepted too and
is always 1-based: `40001` / `400001` = hr:0 on the wire, `30001` = ir, `10001` = di,
`00001` = coil (five digits up to 9999, six up to 65536), `40001.3` for a bit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from connectors.modbus.codec import ORDERS, CodecError, register_count

if TYPE_CHECKING:
    from connectors.tags import TagConfig

Table = Literal["hr", "ir", "coil", "di"]
BIT_TABLES: Final = frozenset({"coil", "di"})
FUNCTION_CODES: Final[dict[str, int]] = {"coil": 1, "di": 2, "hr": 3, "ir": 4}
_CLASSIC_TABLES: Final[dict[str, Table]] = {"0": "coil", "1": "di", "3": "ir", "4": "hr"}

_ADDRESS = re.compile(r"^(?P<table>[a-z]+):(?P<number>\d{1,6})(?:\.(?P<bit>\d{1,2}))?$", re.I)
_CLASSIC = re.compile(r"^(?P<table>[0134])(?P<number>\d{4,5})(?:\.(?P<bit>\d{1,2}))?$")
MAX_ADDRESS: Final = 65535


class AddressError(ValueError):
    """An address or tag definition the Modbus connector cannot read."""


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address: table, 0-based wire address, and the bit of a register if any."""

    table: Table
    index: int
    bit: int | None = None


@dataclass(frozen=True, slots=True)
class TagSpec:
    """One tag as the poller sees it: where it sits on the wire and how to decode it."""

    name: str
    table: Table
    start: int  # wire address of the first register or bit
    size: int  # registers (hr/ir) or bits (coil/di)
    type: str
    order: str
    length: int | None = None
    bit: int | None = None
    scale: float = 1.0
    offset: float = 0.0

    @property
    def end(self) -> int:
        """One past the last register or bit."""
        return self.start + self.size

    @property
    def is_bits(self) -> bool:
        return self.table in BIT_TABLES


def parse_address(text: str, base: int = 0) -> Address:
    """`hr:100`, `coil:3`, `hr:100.3`, or classic `40101`; raises AddressError."""
    text = text.strip()
    if m := _CLASSIC.match(text):
        table = _CLASSIC_TABLES[m["table"]]
        number, first = int(m["number"]), 1  # classic numbering is 1-based by definition
    elif m := _ADDRESS.match(text):
        name = m["table"].lower()
        if name not in FUNCTION_CODES:
            raise AddressError(f"unknown table {m['table']!r}; use hr, ir, coil or di")
        table, number, first = name, int(m["number"]), base  # type: ignore[assignment]
    else:
        raise AddressError(
            f"{text!r} is not a Modbus address; use hr:N, ir:N, coil:N, di:N, hr:N.BIT "
            "or classic 4xxxx/3xxxx/1xxxx/0xxxx"
        )
    index = number - first
    if not 0 <= index <= MAX_ADDRESS:
        raise AddressError(
            f"{text!r} is outside {first}..{MAX_ADDRESS + first} (address_base {first})"
        )
    bit = None
    if m["bit"] is not None:
        if table in BIT_TABLES:
            raise AddressError(f"{text!r}: a bit index applies to registers (hr, ir) only")
        bit = int(m["bit"])
        if bit > 15:
            raise AddressError(f"{text!r}: a register bit is 0..15")
    return Address(table, index, bit)


def tag_spec(
    name: str,
    tag: TagConfig,
    *,
    address_base: int = 0,
    byte_order: str = "ABCD",
    max_registers: int = 125,
    max_bits: int = 2000,
) -> TagSpec:
    """The wire layout of one configured tag; raises AddressError naming the key at fault.

    The message starts with the offending key (`address: ...`, `type: ...`) so the
    configuration check can point at it.
    """
    try:
        addr = parse_address(tag.address, address_base)
    except AddressError as err:
        raise AddressError(f"address: {err}") from err
    order = tag.order or byte_order
    if order not in ORDERS:
        raise AddressError(f"order: unknown byte order {order!r}")
    numeric_only = tag.scale != 1.0 or tag.offset != 0.0
    if addr.table in BIT_TABLES or addr.bit is not None:
        what = "a coil or discrete input" if addr.bit is None else "a register bit"
        if tag.type not in (None, "bool"):
            raise AddressError(f"type: {what} is bool, not {tag.type}")
        if addr.bit is None and tag.order is not None:
            raise AddressError(f"order: {what} has no byte order")
        if tag.length is not None:
            raise AddressError("length: applies to string tags only")
        if numeric_only:
            raise AddressError(f"scale: {what} is bool; scale and offset do not apply")
        return TagSpec(name, addr.table, addr.index, 1, "bool", order, bit=addr.bit)

    data_type = tag.type or _default_type(tag)
    if data_type != "string" and tag.length is not None:
        raise AddressError("length: applies to string tags only")
    if data_type in ("string", "bool") and numeric_only:
        raise AddressError(f"scale: a {data_type} tag has no scale or offset")
    try:
        size = register_count(data_type, tag.length)
    except CodecError as err:
        raise AddressError(f"type: {err}") from err
    if addr.index + size - 1 > MAX_ADDRESS:
        raise AddressError(f"address: {data_type} at {tag.address} runs past register 65535")
    cap = max_bits if addr.table in BIT_TABLES else max_registers
    if size > cap:
        raise AddressError(
            f"{'length' if data_type == 'string' else 'type'}: needs {size} registers, more "
            f"than one request may read on this device (max_registers = {cap})"
        )
    return TagSpec(
        name,
        addr.table,
        addr.index,
        size,
        data_type,
        order,
        length=tag.length,
        scale=tag.scale,
        offset=tag.offset,
    )


def _default_type(tag: TagConfig) -> str:
    # A counter's declared width says how many registers it spans; anything else is the
    # one-register unsigned value that most devices expose.
    if tag.width is not None:
        return f"uint{tag.width}"
    return "uint16"


def tag_specs(
    tags: Mapping[str, TagConfig],
    *,
    address_base: int = 0,
    byte_order: str = "ABCD",
    max_registers: int = 125,
    max_bits: int = 2000,
) -> tuple[list[TagSpec], list[tuple[str, str, str]]]:
    """Every tag's spec, and every problem as (tag, key, message)."""
    specs: list[TagSpec] = []
    problems: list[tuple[str, str, str]] = []
    for name, tag in tags.items():
        try:
            specs.append(
                tag_spec(
                    name,
                    tag,
                    address_base=address_base,
                    byte_order=byte_order,
                    max_registers=max_registers,
                    max_bits=max_bits,
                )
            )
        except AddressError as err:
            key, _, message = str(err).partition(": ")
            problems.append((name, key, message))
    return specs, problems
