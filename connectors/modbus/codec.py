"""Typed values ⇄ 16-bit Modbus registers, in any of the four byte orders.

Orders name the bytes of a 32-bit value A B C D (A most significant) in the order they
appear on the wire, two per register: ABCD is big-endian throughout (Modbus' own order),
CDAB swaps the words ("word swap", common on Schneider/Siemens 32-bit values), BADC swaps
the bytes inside each word, DCBA is little-endian throughout. 16- and 64-bit values follow
the same pattern: the word order reverses for CDAB/DCBA, the bytes in a word swap for
BADC/DCBA. Strings are packed two bytes per register, first character in the high byte
unless the order swaps bytes (BADC/DCBA); trailing NULs and spaces are stripped on decode.
"""

from __future__ import annotations

import struct
from typing import Final

DataType = str  # one of REGISTERS' keys or "bool" / "string"
ByteOrder = str  # "ABCD" | "CDAB" | "BADC" | "DCBA"

# (struct code, registers) of each numeric type
_NUMERIC: Final[dict[str, tuple[str, int]]] = {
    "int16": ("h", 1),
    "uint16": ("H", 1),
    "int32": ("i", 2),
    "uint32": ("I", 2),
    "int64": ("q", 4),
    "uint64": ("Q", 4),
    "float32": ("f", 2),
    "float64": ("d", 4),
}
ORDERS: Final = ("ABCD", "CDAB", "BADC", "DCBA")


class CodecError(ValueError):
    """A value that cannot be encoded or registers that cannot be decoded as asked."""


def register_count(data_type: DataType, length: int | None = None) -> int:
    """How many registers a value of this type occupies."""
    if data_type in _NUMERIC:
        return _NUMERIC[data_type][1]
    if data_type == "string":
        if not length:
            raise CodecError("a string needs a length in bytes")
        return (length + 1) // 2
    if data_type == "bool":
        return 1
    raise CodecError(f"unknown data type {data_type!r}")


def _check_order(order: ByteOrder) -> None:
    if order not in ORDERS:
        raise CodecError(f"unknown byte order {order!r}; use one of {', '.join(ORDERS)}")


def _to_wire(big_endian: bytes, order: ByteOrder) -> bytes:
    words = [big_endian[i : i + 2] for i in range(0, len(big_endian), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return b"".join(words)


def _from_wire(wire: bytes, order: ByteOrder) -> bytes:
    # Each reordering is its own inverse.
    return _to_wire(wire, order)


def _registers(raw: bytes) -> list[int]:
    return list(struct.unpack(f">{len(raw) // 2}H", raw))


def _bytes(registers: list[int]) -> bytes:
    try:
        return struct.pack(f">{len(registers)}H", *registers)
    except struct.error as err:
        raise CodecError(f"registers must be 0..65535: {err}") from err


def encode(
    value: bool | int | float | str,
    data_type: DataType,
    order: ByteOrder = "ABCD",
    length: int | None = None,
) -> list[int]:
    """The registers holding `value` as `data_type` in `order`."""
    _check_order(order)
    if data_type == "bool":
        return [1 if value else 0]
    if data_type == "string":
        n = register_count("string", length)
        raw = str(value).encode("latin-1")
        if length is not None and len(raw) > length:
            raise CodecError(f"string longer than {length} bytes")
        raw = raw.ljust(n * 2, b"\0")
        if order in ("BADC", "DCBA"):
            raw = _to_wire(raw, "BADC")
        return _registers(raw)
    if data_type not in _NUMERIC:
        raise CodecError(f"unknown data type {data_type!r}")
    code, _ = _NUMERIC[data_type]
    try:
        packed = struct.pack(f">{code}", value)
    except struct.error as err:
        raise CodecError(f"{value!r} does not fit {data_type}") from err
    return _registers(_to_wire(packed, order))


def decode(
    registers: list[int],
    data_type: DataType,
    order: ByteOrder = "ABCD",
    length: int | None = None,
) -> bool | int | float | str:
    """The value the registers hold; raises CodecError on a wrong register count."""
    _check_order(order)
    need = register_count(data_type, length)
    if len(registers) != need:
        raise CodecError(f"{data_type} needs {need} registers, got {len(registers)}")
    if data_type == "bool":
        return registers[0] != 0
    raw = _bytes(registers)
    if data_type == "string":
        if order in ("BADC", "DCBA"):
            raw = _from_wire(raw, "BADC")
        return raw[:length].rstrip(b"\0 ").decode("latin-1")
    code, _ = _NUMERIC[data_type]
    value: int | float = struct.unpack(f">{code}", _from_wire(raw, order))[0]
    return value


def bit(register: int, index: int) -> bool:
    """Bit `index` (0 = least significant) of a register."""
    if not 0 <= index <= 15:
        raise CodecError("a register bit index is 0..15")
    return bool((register >> index) & 1)
