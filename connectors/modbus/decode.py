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

Polling reports by exception (`read`): a response whose bytes equal the previous one's
yields only the tags that must be reported at every poll (`every`: the counters, whose
wraps the rules judge from when the value was last seen); otherwise the changed registers
are found with one XOR of the two responses as integers, and only the tags on them are
decoded, each by its own precompiled `struct` at its offset. The first response, and the
first after `forget()` (an error response, a lost link) or after an answer of the wrong
length (refused), report every tag.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Sequence
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

    def __init__(self, request: Request, every: Collection[str] | None = None) -> None:
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
        # Report by exception: each tag's own struct and byte offset, the tags on each
        # register, and the tags reported at every poll (all when `every` is None).
        kinds = {i: (kind, a, b) for i, kind, a, b in self._fixups}
        self._one: list[tuple[struct.Struct, int, bool, tuple[int, Any, Any] | None, bool]] = []
        by_register: list[list[int]] = [[] for _ in range(request.count)]
        for i, tag in enumerate(ordered):
            little_regs, little_value = _layout(tag)
            st = struct.Struct(("<" if little_value else ">") + _code(tag))
            at = tag.start - request.start
            self._one.append((st, 2 * at, little_regs, kinds.get(i), tag.type in _FLOATS))
            for r in range(at, at + tag.size):
                by_register[r].append(i)
        self._by_register = [tuple(tags) for tags in by_register]
        self._all = every is None
        self._every = tuple(i for i, t in enumerate(ordered) if every and t.name in every)
        self._prev: bytes | None = None
        self._swap = bytearray(2 * request.count)

    def values(self, registers: Sequence[int]) -> list[Value]:
        """Decoded, scaled values in `names` order; a non-finite float is None."""
        return self._values(self._pack_big.pack(*registers))

    def _little(self, big: bytes) -> bytearray:
        """The same registers packed little-endian: the bytes of each swapped (in a buffer
        kept for the next response: only read while decoding this one)."""
        swap = self._swap
        if len(swap) != len(big):
            swap = bytearray(len(big))
        swap[0::2] = big[1::2]
        swap[1::2] = big[0::2]
        return swap

    def _values(self, big: bytes) -> list[Value]:
        little: bytes | bytearray = self._little(big) if self._needs_little else big
        raw: tuple[Any, ...] = ()
        for st, little_regs in self._structs:
            raw += st.unpack_from(little if little_regs else big)
        values: list[Any] = list(raw)
        for i, kind, a, b in self._fixups:
            values[i] = _fixed(values[i], kind, a, b)
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
        """One sample per tag."""
        return self._samples(machine, self.values(registers), ts)

    def forget(self) -> None:
        """Report every tag with the next response (its tags were bad, or the link lost)."""
        self._prev = None

    def read(self, machine: str, data: bytes, ts: datetime) -> list[Sample]:
        """The samples of one response (its registers as bytes, big-endian as on the wire):
        every tag the first time, then the tags that changed and those reported always."""
        prev = self._prev
        if len(data) != 2 * self.count:
            self._prev = None
            raise ValueError(f"{len(data) // 2} registers in answer, asked {self.count}")
        self._prev = data
        if self._all or prev is None:
            return self._samples(machine, self._values(data), ts)
        if data == prev:
            picked: Sequence[int] = self._every
        else:
            picked = self._changed(data, prev)
        if not picked:
            return []
        names = self.names
        one = self._one
        little: bytearray | None = None
        out = []
        for i in picked:
            st, at, little_regs, fixup, is_float = one[i]
            if little_regs:
                if little is None:
                    little = self._little(data)
                v = st.unpack_from(little, at)[0]
            else:
                v = st.unpack_from(data, at)[0]
            if fixup is not None:
                v = _fixed(v, *fixup)
            if is_float and not math.isfinite(v):
                out.append(Sample(machine, names[i], None, ts, "bad", "not a finite number"))
            else:
                out.append(Sample(machine, names[i], v, ts))
        return out

    def _changed(self, data: bytes, prev: bytes) -> list[int]:
        """Indexes (in `names` order) of the tags on changed registers, and the `every` ones."""
        diff = int.from_bytes(data, "big") ^ int.from_bytes(prev, "big")
        picked = set(self._every)
        by_register = self._by_register
        n = self.count
        shift = 0  # registers dropped off the right of diff so far
        while diff:
            r = (
                (diff & -diff).bit_length() - 1
            ) >> 4  # the lowest changed register, from the right
            diff >>= (r + 1) << 4
            shift += r + 1
            picked.update(by_register[n - shift])
        return sorted(picked)

    def _samples(self, machine: str, values: list[Value], ts: datetime) -> list[Sample]:
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

    def __init__(self, request: Request, every: Collection[str] | None = None) -> None:
        self.request = request
        self.count = request.count
        self.names: tuple[str, ...] = tuple(t.name for t in request.tags)
        offsets = [t.start - request.start for t in request.tags]
        self._offsets = offsets
        self._getter = itemgetter(*offsets) if len(offsets) > 1 else None
        self._all = every is None
        self._every = frozenset(i for i, t in enumerate(request.tags) if every and t.name in every)
        self._prev: list[bool] | None = None

    def values(self, bits: Sequence[bool]) -> list[Value]:
        if self._getter is None:
            return [bool(bits[self._offsets[0]])]
        return list(self._getter(bits))

    def samples(self, machine: str, bits: Sequence[bool], ts: datetime) -> list[Sample]:
        values = self.values(bits)
        n = len(values)
        return list(map(Sample, repeat(machine, n), self.names, values, repeat(ts, n)))

    def forget(self) -> None:
        """Report every tag with the next response."""
        self._prev = None

    def read(self, machine: str, bits: Sequence[bool], ts: datetime) -> list[Sample]:
        """As `RegisterDecoder.read`: every tag first, then those that changed or are
        reported always."""
        now = list(bits[: self.count])
        prev = self._prev
        self._prev = now
        if self._all or prev is None or len(prev) != len(now):
            return self.samples(machine, now, ts)
        if now == prev:
            picked = sorted(self._every)
        else:
            every = self._every
            picked = [i for i, at in enumerate(self._offsets) if i in every or now[at] != prev[at]]
        names = self.names
        return [Sample(machine, names[i], bool(now[self._offsets[i]]), ts) for i in picked]


Decoder = RegisterDecoder | BitDecoder


def decoder_for(request: Request, every: Collection[str] | None = None) -> Decoder:
    """The request's decoder; `every`: the tags reported at every poll (None: all of them,
    so every poll reports every tag)."""
    if request.table in ("coil", "di"):
        return BitDecoder(request, every)
    return RegisterDecoder(request, every)


def _fixed(v: Any, kind: int, a: Any, b: Any) -> Value:
    if kind == _SCALE:
        return v * a + b  # type: ignore[no-any-return]
    if kind == _BIT:
        return bool((v >> a) & 1)
    if kind == _NONZERO:
        return v != 0  # type: ignore[no-any-return]
    return v[:a].rstrip(b"\0 ").decode("latin-1")  # type: ignore[no-any-return]


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
