"""FastProperties decodes and encodes exactly as paho's Properties does."""

from __future__ import annotations

import pytest
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt.client import _varint
from gateway.mqtt.properties import FastProperties

CASES = [
    {},
    {"ContentType": "application/json"},
    {"ContentType": "application/json", "UserProperty": [("schema", "mes.event/1"), ("a", "b")]},
    {"MessageExpiryInterval": 30, "ResponseTopic": "r/t", "CorrelationData": b"\x01\x02"},
    {"PayloadFormatIndicator": 1, "TopicAlias": 7, "SubscriptionIdentifier": [3]},
]


def build(cls: type[Properties], values: dict[str, object]) -> Properties:
    props = cls(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            setattr(props, name, item)
    return props


@pytest.mark.parametrize("values", CASES)
def test_same_wire_bytes_and_same_decoding(values: dict[str, object]) -> None:
    reference = build(Properties, values)
    fast = build(FastProperties, values)
    assert fast.pack() == reference.pack()  # type: ignore[no-untyped-call]
    packed = reference.pack()  # type: ignore[no-untyped-call]
    decoded_ref = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    decoded_ref.unpack(packed)  # type: ignore[no-untyped-call]
    decoded = FastProperties(PacketTypes.PUBLISH)
    decoded.unpack(packed)  # type: ignore[no-untyped-call]
    assert decoded.json() == decoded_ref.json()  # type: ignore[no-untyped-call]
    assert decoded.isEmpty() == decoded_ref.isEmpty() == (not values)  # type: ignore[no-untyped-call]
    decoded.clear()
    assert decoded.isEmpty()


@pytest.mark.parametrize(
    ("name", "value"),
    [("NoSuchProperty", 1), ("SessionExpiryInterval", 5), ("TopicAlias", 0)],
)
def test_the_same_errors(name: str, value: object) -> None:
    for cls in (Properties, FastProperties):
        with pytest.raises(MQTTException):
            setattr(cls(PacketTypes.PUBLISH), name, value)  # type: ignore[no-untyped-call]


def test_a_property_twice_is_refused_on_decoding() -> None:
    raw = build(Properties, {"ContentType": "a"}).pack()  # type: ignore[no-untyped-call]
    doubled = bytes([raw[0] * 2]) + raw[1:] + raw[1:]
    for cls in (Properties, FastProperties):
        with pytest.raises(MQTTException):
            cls(PacketTypes.PUBLISH).unpack(doubled)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("encoded", "value"),
    [(b"\x00", 0), (b"\x7f", 127), (b"\x80\x01", 128), (b"\xff\xff\xff\x7f", 268_435_455)],
)
def test_variable_byte_integer(encoded: bytes, value: int) -> None:
    assert _varint(b"xx" + encoded + b"tail", 2) == (value, len(encoded))


def test_variable_byte_integer_too_long() -> None:
    with pytest.raises(ValueError):
        _varint(b"\x80\x80\x80\x80\x01", 0)
