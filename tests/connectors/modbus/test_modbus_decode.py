"""The compiled block decoder gives exactly what `codec.decode` gives, tag by tag."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.modbus.address import TagSpec
from connectors.modbus.codec import ORDERS, decode, encode, register_count
from connectors.modbus.decode import BitDecoder, RegisterDecoder
from connectors.modbus.plan import Request, plan

NUMERIC = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
TS = datetime(2026, 1, 1, tzinfo=UTC)

_values = {
    "int16": st.integers(-(2**15), 2**15 - 1),
    "uint16": st.integers(0, 2**16 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "uint32": st.integers(0, 2**32 - 1),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "uint64": st.integers(0, 2**64 - 1),
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "float64": st.floats(allow_nan=False, allow_infinity=False),
}


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[TagSpec], list[int]]:
    """Tags of random types and orders at random places in one block, and its registers."""
    registers = [draw(st.integers(0, 0xFFFF)) for _ in range(120)]
    tags: list[TagSpec] = []
    for i in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from([*NUMERIC, "string", "bool", "bit"]))
        order = draw(st.sampled_from(ORDERS))
        length = draw(st.integers(1, 12)) if kind == "string" else None
        size = register_count(kind if kind != "bit" else "uint16", length)
        start = draw(st.integers(0, 120 - size))
        name = f"t{i}"
        if kind == "bit":
            tags.append(TagSpec(name, "hr", start, 1, "bool", order, bit=draw(st.integers(0, 15))))
            continue
        if kind in NUMERIC:
            value = draw(_values[kind])
            registers[start : start + size] = encode(value, kind, order)
        tags.append(TagSpec(name, "hr", start, size, kind, order, length=length))
    return tags, registers


def expected(tag: TagSpec, registers: list[int]) -> object:
    regs = registers[tag.start - 0 : tag.end]
    if tag.bit is not None:
        [value] = regs
        if tag.order in ("BADC", "DCBA"):
            value = struct.unpack("<H", struct.pack(">H", value))[0]
        return bool((value >> tag.bit) & 1)
    return decode(regs, tag.type, tag.order, tag.length)


@settings(max_examples=400, deadline=None)
@given(layouts())
def test_block_decoder_matches_codec(layout: tuple[list[TagSpec], list[int]]) -> None:
    tags, registers = layout
    request = Request("hr", 0, 120, tuple(tags))
    decoder = RegisterDecoder(request)
    got = dict(zip(decoder.names, decoder.values(registers), strict=True))
    for tag in tags:
        want = expected(tag, registers)
        if isinstance(want, float) and not math.isfinite(want):
            assert got[tag.name] is None
        else:
            assert got[tag.name] == want, tag


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_type", NUMERIC)
def test_every_type_in_every_order(data_type: str, order: str) -> None:
    value = {"float32": -1.5, "float64": 1e300}.get(data_type, 100 if "u" in data_type else -100)
    registers = [0xDEAD, *encode(value, data_type, order), 0xBEEF]
    spec = TagSpec("v", "hr", 11, register_count(data_type), data_type, order)
    decoder = RegisterDecoder(Request("hr", 10, len(registers), (spec,)))
    [sample] = decoder.samples("m", registers, TS)
    assert (sample.value, sample.quality, sample.ts) == (value, "good", TS)


def test_scale_offset_strings_bits_and_bools() -> None:
    tags = [
        TagSpec("temp", "hr", 0, 1, "int16", "ABCD", scale=0.1, offset=-5.0),
        TagSpec("name", "hr", 1, 3, "string", "ABCD", length=5),
        TagSpec("swapped", "hr", 4, 2, "string", "BADC", length=4),
        TagSpec("flag", "hr", 6, 1, "bool", "ABCD"),
        TagSpec("bit3", "hr", 7, 1, "bool", "ABCD", bit=3),
        TagSpec("word", "hr", 7, 1, "uint16", "ABCD"),
    ]
    registers = [
        *encode(-250, "int16"),
        *encode("AB-42", "string", length=5),
        *encode("XY", "string", "BADC", length=4),
        7,
        0b1000,
    ]
    decoder = RegisterDecoder(Request("hr", 0, 8, tuple(tags)))
    got = dict(zip(decoder.names, decoder.values(registers), strict=True))
    assert got == {
        "temp": pytest.approx(-30.0),
        "name": "AB-42",
        "swapped": "XY",
        "flag": True,
        "bit3": True,
        "word": 8,
    }


def test_non_finite_floats_are_bad_not_fatal() -> None:
    tags = [
        TagSpec("a", "hr", 0, 2, "float32", "ABCD"),
        TagSpec("b", "hr", 2, 2, "float32", "CDAB"),
        TagSpec("c", "hr", 4, 4, "float64", "ABCD", scale=2.0),
    ]
    registers = encode(math.nan, "float32") + encode(2.5, "float32", "CDAB")
    registers += encode(math.inf, "float64")
    samples = {
        s.tag: s
        for s in RegisterDecoder(Request("hr", 0, 8, tuple(tags))).samples("m", registers, TS)
    }
    assert (samples["a"].value, samples["a"].quality) == (None, "bad")
    assert samples["a"].status == "not a finite number"
    assert (samples["b"].value, samples["b"].quality) == (2.5, "good")
    assert (samples["c"].value, samples["c"].quality) == (None, "bad")


def test_bits() -> None:
    tags = [TagSpec(f"c{i}", "coil", i * 3, 1, "bool", "ABCD") for i in range(5)]
    [request] = plan(tags)
    bits = [i % 3 == 0 and i % 2 == 0 for i in range(16)]
    samples = BitDecoder(request).samples("m", bits, TS)
    assert [(s.tag, s.value) for s in samples] == [
        ("c0", True),
        ("c1", False),
        ("c2", True),
        ("c3", False),
        ("c4", True),
    ]
    one = BitDecoder(Request("di", 4, 1, (TagSpec("d", "di", 4, 1, "bool", "ABCD"),)))
    assert one.values([True, False, False, False, False, False, False, False]) == [True]


# -- report by exception: only what changed (and what is reported at every poll) -----------


def _bytes(registers: list[int]) -> bytes:
    return struct.pack(f">{len(registers)}H", *registers)


def _reported(decoder: RegisterDecoder, registers: list[int]) -> dict[str, object]:
    return {s.tag: s.value for s in decoder.read("m", _bytes(registers), TS)}


def _want(tag: TagSpec, registers: list[int]) -> object:
    want = expected(tag, registers)
    return None if isinstance(want, float) and not math.isfinite(want) else want


@settings(max_examples=400, deadline=None)
@given(layouts(), st.data())
def test_a_changed_response_reports_exactly_the_tags_on_changed_registers(
    layout: tuple[list[TagSpec], list[int]], data: st.DataObject
) -> None:
    tags, first = layout
    every = data.draw(st.sets(st.sampled_from([t.name for t in tags])))
    decoder = RegisterDecoder(Request("hr", 0, 120, tuple(tags)), every)
    # The first response reports every tag.
    assert _reported(decoder, first) == {t.name: _want(t, first) for t in tags}
    second = list(first)
    for at in data.draw(st.sets(st.integers(0, 119), max_size=8)):
        second[at] = data.draw(st.integers(0, 0xFFFF))
    changed = {at for at in range(120) if second[at] != first[at]}
    touched = {t.name for t in tags if changed & set(range(t.start, t.end))}
    got = _reported(decoder, second)
    assert got == {t.name: _want(t, second) for t in tags if t.name in touched | every}
    # The same bytes again: only the tags reported at every poll.
    assert _reported(decoder, second) == {t.name: _want(t, second) for t in tags if t.name in every}


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_type", NUMERIC)
def test_a_change_in_any_one_word_of_any_type_in_any_order_is_reported(
    data_type: str, order: str
) -> None:
    size = register_count(data_type)
    spec = TagSpec("v", "hr", 11, size, data_type, order)
    other = TagSpec("w", "hr", 10 + size + 1, 1, "uint16", "ABCD")
    decoder = RegisterDecoder(Request("hr", 10, size + 2, (spec, other)), every=())
    value = {"float32": -1.5, "float64": 1e300}.get(data_type, 100 if "u" in data_type else -100)
    registers = [0xDEAD, *encode(value, data_type, order), 0xBEEF]
    assert _reported(decoder, registers) == {"v": value, "w": 0xBEEF}
    assert _reported(decoder, registers) == {}
    for word in range(size):
        registers[1 + word] ^= 0x0100  # one byte of one word of the value
        want = decode(registers[1 : 1 + size], data_type, order)
        got = _reported(decoder, registers)
        assert list(got) == ["v"]
        if isinstance(want, float) and math.isnan(want):
            assert got["v"] is None
        else:
            assert got["v"] == want
    registers[-1] = 7
    assert _reported(decoder, registers) == {"w": 7}


def test_first_response_forget_and_a_length_change_report_every_tag() -> None:
    tags = (
        TagSpec("good", "hr", 0, 2, "uint32", "ABCD"),
        TagSpec("state", "hr", 2, 1, "int16", "ABCD"),
        TagSpec("temp", "hr", 3, 2, "float32", "CDAB", scale=0.5),
    )
    decoder = RegisterDecoder(Request("hr", 0, 5, tags), every={"good"})
    registers = [*encode(41, "uint32"), 6, *encode(20.0, "float32", "CDAB")]
    everything = {"good": 41, "state": 6, "temp": 10.0}
    assert _reported(decoder, registers) == everything
    assert _reported(decoder, registers) == {"good": 41}  # the counter at every poll
    decoder.forget()  # an error or a lost link in between: every tag is news again
    assert _reported(decoder, registers) == everything
    # An answer of another length is refused (the poller checks the length before, and
    # drops the connection), and the next one of the right length reports every tag.
    with pytest.raises(ValueError, match="4 registers in answer, asked 5"):
        decoder.read("m", _bytes(registers)[:8], TS)
    assert _reported(decoder, registers) == everything
    assert _reported(decoder, registers) == {"good": 41}


def test_a_non_finite_float_that_changes_is_bad_and_good_again() -> None:
    tags = (TagSpec("a", "hr", 0, 2, "float32", "ABCD"), TagSpec("b", "hr", 2, 1, "int16", "ABCD"))
    decoder = RegisterDecoder(Request("hr", 0, 3, tags), every=())
    decoder.read("m", _bytes([*encode(1.0, "float32"), 5]), TS)
    [bad] = decoder.read("m", _bytes([*encode(math.nan, "float32"), 5]), TS)
    assert (bad.tag, bad.value, bad.quality, bad.status) == (
        "a",
        None,
        "bad",
        "not a finite number",
    )
    [good] = decoder.read("m", _bytes([*encode(2.0, "float32"), 5]), TS)
    assert (good.tag, good.value, good.quality) == ("a", 2.0, "good")


def test_without_every_each_response_reports_every_tag() -> None:
    tags = (TagSpec("a", "hr", 0, 1, "int16", "ABCD"), TagSpec("b", "hr", 1, 1, "int16", "ABCD"))
    decoder = RegisterDecoder(Request("hr", 0, 2, tags))
    assert _reported(decoder, [1, 2]) == _reported(decoder, [1, 2]) == {"a": 1, "b": 2}


def test_bits_report_by_exception() -> None:
    tags = [TagSpec(f"c{i}", "coil", i * 3, 1, "bool", "ABCD") for i in range(5)]
    [request] = plan(tags)
    decoder = BitDecoder(request, every={"c4"})
    bits = [False] * 16
    assert len(decoder.read("m", bits, TS)) == 5
    assert [(s.tag, s.value) for s in decoder.read("m", bits, TS)] == [("c4", False)]
    bits[3] = bits[4] = True  # c1 and a bit no tag reads
    assert [(s.tag, s.value) for s in decoder.read("m", bits, TS)] == [("c1", True), ("c4", False)]
    decoder.forget()
    assert len(decoder.read("m", bits, TS)) == 5
