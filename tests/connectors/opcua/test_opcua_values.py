"""DataValue → Sample: values, timestamps and quality, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asyncua import ua

from connectors.opcua.nodeid import parse_node_id
from connectors.opcua.values import Tag, status_name, to_sample

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TAG = Tag("good", parse_node_id("ns=2;s=Good"), 0.25, 0.0, 1.0)


def dv(
    value: object, status: int = 0, source: datetime | None = None, server: datetime | None = None
) -> ua.DataValue:
    return ua.DataValue(
        ua.Variant(value),
        StatusCode=ua.StatusCode(status),
        SourceTimestamp=source,
        ServerTimestamp=server,
    )


def test_source_timestamp_first_then_server_then_receipt() -> None:
    src, srv = NOW - timedelta(seconds=2), NOW - timedelta(seconds=1)
    assert to_sample("m", TAG, dv(1, source=src, server=srv), NOW).ts == src
    assert to_sample("m", TAG, dv(1, server=srv), NOW).ts == srv
    assert to_sample("m", TAG, dv(1), NOW).ts == NOW


@pytest.mark.parametrize(
    ("status", "quality", "name"),
    [
        (ua.StatusCodes.Good, "good", None),
        (ua.StatusCodes.GoodClamped, "good", "GoodClamped"),
        (ua.StatusCodes.Uncertain, "uncertain", "Uncertain"),
        (ua.StatusCodes.UncertainSensorNotAccurate, "uncertain", "UncertainSensorNotAccurate"),
        (ua.StatusCodes.BadCommunicationError, "bad", "BadCommunicationError"),
        (ua.StatusCodes.BadNodeIdUnknown, "bad", "BadNodeIdUnknown"),
    ],
)
def test_status_code_severity_is_the_quality(status: int, quality: str, name: str | None) -> None:
    sample = to_sample("m", TAG, dv(5, status), NOW)
    assert (sample.quality, sample.status) == (quality, name)
    assert sample.value == (None if quality == "bad" else 5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (7, 7),
        (2.5, 2.5),
        ("WO-17", "WO-17"),
        (ua.LocalizedText("Running"), "Running"),
        (ua.MessageSecurityMode.Sign, 2),
    ],
)
def test_plain_values(value: object, expected: object) -> None:
    sample = to_sample("m", TAG, dv(value), NOW)
    assert (sample.value, sample.quality) == (expected, "good")
    assert type(sample.value) is type(expected)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([1, 2, 3], "arrays are not supported"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (b"\x00\x01", "unsupported value type bytes"),
        (None, "null value"),
    ],
)
def test_values_a_sample_cannot_carry_are_bad_not_fatal(value: object, problem: str) -> None:
    sample = to_sample("m", TAG, dv(value), NOW)
    assert sample.quality == "bad" and sample.value is None
    assert sample.status is not None and problem in sample.status


def test_scale_and_offset_apply_to_numbers_not_to_booleans() -> None:
    scaled = Tag("speed", TAG.address, 0.25, 0.0, 1.0, scale=0.1, offset=-1.0)
    assert to_sample("m", scaled, dv(250), NOW).value == pytest.approx(24.0)
    assert to_sample("m", scaled, dv(True), NOW).value is True


def test_unknown_status_codes_are_shown_in_hex() -> None:
    assert status_name(0x80FF1234) == "0x80FF1234"
    assert status_name(ua.StatusCodes.BadTimeout) == "BadTimeout"
