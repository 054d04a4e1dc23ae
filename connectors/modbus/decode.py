"""Compiled decoding of one request's response into samples: the poller's hot path.

Each request gets its decoder once, when the plan is made. The response's registers are
packed into bytes once big-endian and (only if some tag needs it) once little-endian per
register; every tag is then read by one precompiled `struct` per (packing, value
endianness) pair, with pad bytes over the registers in between. The four byte orders map
onto those pairs:

    ABCD: registers big-endian,    value big-endian
    DCBA: registers big-endian,    value little-endian
    BADC: registers little-endian, value big-endian
    CDAB: registers little-endian, value little-endian

which gives exactly `codec.decode` (a test checks every type in every order against it).
Only tags that need it (scale/offset, bits, strings, floats that may be NaN) get per-value
Python work afterwards.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, Final

from connectors.modbus.address import TagSpec
from connectors.modbus.plan import Request
from connectors.sample import Sample, Value

_CODES: Final[dict[str, str]] = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
    "bool": "H",
}
# (registers packed little-endian?, value read little-endian?)
_LAYOUT: Final[dict[str, tuple[bool, bool]]] = {
    "ABCD": (False, False),
    "DCBA": (False, True),
    "BADC": (True, False),
    "CDAB": (True, True),
}
_FLOATS: Final = frozenset({"float32", "float64"})

# post-processing kinds
_SCALE, _BIT, _NONZERO, _STRING = range(4)


def _layout(tag: TagSpec) -> tuple[bool, bool]:
    if tag.type == "string":
        # Characters fill each register high byte first unless the order swaps bytes.
        return (tag.order in ("BADC", "DCBA"), False)
    if tag.type == "bool" and tag.bit is None:
        return (False, False)  # non-zero is non-zero in any byte order
    return _LAYOUT[tag.order]


def _code(tag: TagSpec) -> str:
    if tag.type == "string":
        return f"{tag.size * 2}s"
    return _CODES[tag.type]


class RegisterDecoder:
    """Registers of one holding/input register request → one sample per tag."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.count = request.count
        self._pack_big = struct.Struct(f">{request.count}H")
        self._pack_little = struct.Struct(f"<{request.count}H")
        self._needs_little = False
        # Structs in the order their values are concatenated; tags follow the same order.
        self._structs: list[tuple[struct.Struct, bool]] = []
        ordered: list[TagSpec] = []
        by_layout: dict[tuple[bool, bool], list[TagSpec]] = {}
        for tag in request.tags:
            by_layout.setdefault(_layout(tag), []).append(tag)
        for (little_regs, little_value), tags in sorted(by_layout.items()):
            for layer in _layers(tags):
                fmt = ["<" if little_value else ">"]
                at = request.start
                for tag in layer:
                    if tag.start > at:
                        fmt.append(f"{(tag.start - at) * 2}x")
                    fmt.append(_code(tag))
                    at = tag.end
                self._structs.append((struct.Struct("".join(fmt)), little_regs))
                self._needs_little |= little_regs
                ordered += layer
        self.names: tuple[str, ...] = tuple(t.name for t in ordered)
        self._fixups: list[tuple[int, int, Any, Any]] = []
        floats: list[int] = []
        for i, tag in enumerate(ordered):
            if tag.type == "string":
                self._fixups.append((i, _STRING, tag.length, None))
            elif tag.bit is not None:
                self._fixups.append((i, _BIT, tag.bit, None))
            elif tag.type == "bool":
                self._fixups.append((i, _NONZERO, None, None))
            elif tag.scale != 1.0 or tag.offset != 0.0:
                self._fixups.append((i, _SCALE, tag.scale, tag.offset))
            if tag.type in _FLOATS:
                floats.append(i)
        self._floats = floats
        self._float_getter = itemgetter(*floats) if len(floats) > 1 else None

    def values(self, registers: Sequence[int]) -> list[Value]:
        """Decoded, scaled values in `names` order; a non-finite float is None."""
        big = self._pack_big.pack(*registers)
        little = self._pack_little.pack(*registers) if self._needs_little else big
        raw: tuple[Any, ...] = ()
        for st, little_regs in self._structs:
            raw += st.unpack_from(little if little_regs else big)
        values: list[Any] = list(raw)
        for i, kind, a, b in self._fixups:
            v = values[i]
            if kind == _SCALE:
                values[i] = v * a + b
            elif kind == _BIT:
                values[i] = bool((v >> a) & 1)
            elif kind == _NONZERO:
                values[i] = v != 0
            else:
                values[i] = v[:a].rstrip(b"\0 ").decode("latin-1")
        if self._floats and not self._all_finite(values):
            for i in self._floats:
                if not math.isfinite(values[i]):
                    values[i] = None
        return values

    def _all_finite(self, values: list[Any]) -> bool:
        # One C-level sum instead of a Python test per float; an overflowing sum of finite
        # values only costs the per-value check.
        if self._float_getter is None:
            return math.isfinite(values[self._floats[0]])
        return math.isfinite(sum(self._float_getter(values)))

    def samples(self, machine: str, registers: Sequence[int], ts: datetime) -> list[Sample]:
        values = self.values(registers)
        n = len(values)
        samples = list(map(Sample, repeat(machine, n), self.names, values, repeat(ts, n)))
        if self._floats:
            for i in self._floats:
                if values[i] is None:
                    samples[i] = Sample(
                        machine, self.names[i], None, ts, "bad", "not a finite number"
                    )
        return samples


class BitDecoder:
    """Bits of one coil/discrete input request → one bool sample per tag."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.count = request.count
        self.names: tuple[str, ...] = tuple(t.name for t in request.tags)
        offsets = [t.start - request.start for t in request.tags]
        self._offsets = offsets
        self._getter = itemgetter(*offsets) if len(offsets) > 1 else None

    def values(self, bits: Sequence[bool]) -> list[Value]:
        if self._getter is None:
            return [bool(bits[self._offsets[0]])]
        return list(self._getter(bits))

    def samples(self, machine: str, bits: Sequence[bool], ts: datetime) -> list[Sample]:
        values = self.values(bits)
        n = len(values)
        return list(map(Sample, repeat(machine, n), self.names, values, repeat(ts, n)))


Decoder = RegisterDecoder | BitDecoder


def decoder_for(request: Request) -> Decoder:
    if request.table in ("coil", "di"):
        return BitDecoder(request)
    return RegisterDecoder(request)


def _layers(tags: list[TagSpec]) -> list[list[TagSpec]]:
    """Tags split into runs without overlap (a struct reads forward only), in address order."""
    layers: list[list[TagSpec]] = []
    ends: list[int] = []
    for tag in sorted(tags, key=lambda t: (t.start, t.end)):
        for i, end in enumerate(ends):
            if tag.start >= end:
                layers[i].append(tag)
                ends[i] = tag.end
                break
        else:
            layers.append([tag])
            ends.append(tag.end)
    return layers
