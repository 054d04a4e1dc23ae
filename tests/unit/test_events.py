"""The event contract: envelope round trip, validation, UUIDv7, topics, schema drift."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest
from pydantic import ValidationError

from gateway import schema
from gateway.events import (
    CountData,
    DowntimeData,
    Draft,
    Event,
    OrderData,
    StateData,
    event_filters,
    publications,
    status_topic,
    uuid7,
    uuid7_time,
)

T0 = datetime(2026, 3, 29, 0, 59, 59, 123456, tzinfo=UTC)


def seal(draft: Draft, seq: int = 1) -> Event:
    return draft.seal(event_id=uuid7(), seq=seq, gateway="gw-1", site="plant")


def count_draft() -> Draft:
    data = CountData(good=9, reject=1, total=10, start=T0, end=T0 + timedelta(seconds=10))
    return Draft(type="count", ts=T0, area="pack", line="l1", machine="filler", data=data)


def test_round_trip_and_wire_format() -> None:
    event = seal(count_draft())
    wire = json.loads(event.to_json())
    assert wire["schema"] == "mes.event/1"
    assert wire["ts"] == "2026-03-29T00:59:59.123Z"  # UTC, milliseconds
    assert wire["data"]["end"] == "2026-03-29T01:00:09.123Z"
    assert uuid.UUID(wire["event_id"]).version == 7
    assert Event.from_json(event.to_json()) == event


def test_timestamps_are_utc_and_aware() -> None:
    cet = datetime(2026, 1, 1, 12, 0, tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    data = StateData(bucket="running", since=cet)
    assert json.loads(data.model_dump_json())["since"] == "2026-01-01T11:00:00.000Z"
    with pytest.raises(ValidationError, match="time zone"):
        StateData(bucket="running", since=datetime(2026, 1, 1))


def test_data_must_match_type() -> None:
    wire = json.loads(seal(count_draft()).to_json())
    wire["type"] = "state"
    with pytest.raises(ValidationError):
        Event.model_validate(wire)
    wire["type"] = "count"
    wire["data"]["colour"] = "red"
    with pytest.raises(ValidationError, match="colour"):
        Event.model_validate(wire)


def test_uuid7_is_time_ordered_and_unique() -> None:
    ids = [uuid7() for _ in range(20_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids[:100])
    assert abs((uuid7_time(ids[0]) - datetime.now(UTC)).total_seconds()) < 5
    # Clock stepping back keeps the order.
    later = uuid7(now_ms=2_000_000_000_000)
    assert uuid7(now_ms=1_000_000_000_000) > later


def test_topics_and_retain_flags() -> None:
    base = "mes/v1/plant/pack/l1/filler"
    [count] = publications(seal(count_draft()), "mes/v1")
    assert (count.topic, count.retain) == (f"{base}/count", False)

    state = seal(Draft("state", T0, "pack", "l1", "filler", StateData(bucket="down", since=T0)))
    assert [(p.topic, p.retain) for p in publications(state, "mes/v1")] == [(f"{base}/state", True)]
    started = DowntimeData(downtime_id="d1", start=T0)
    pubs = publications(
        seal(Draft("downtime.started", T0, "pack", "l1", "filler", started)), "mes/v1"
    )
    assert [(p.topic, p.retain, bool(p.payload)) for p in pubs] == [
        (f"{base}/downtime", False, True),
        (f"{base}/downtime/active", True, True),
    ]
    ended = DowntimeData(downtime_id="d1", start=T0, end=T0, duration_s=0)
    pubs = publications(seal(Draft("downtime.ended", T0, "pack", "l1", "filler", ended)), "mes/v1")
    assert pubs[1].payload == b"" and pubs[1].retain  # clears the retained active downtime
    order = OrderData(order_id="WO-1", status="completed")
    pubs = publications(seal(Draft("order.ended", T0, "pack", "l1", "filler", order)), "mes/v1")
    assert [(p.topic, p.retain, bool(p.payload)) for p in pubs] == [
        (f"{base}/order", False, True),
        (f"{base}/order", True, False),
    ]
    assert status_topic("mes/v1", "plant", "gw-1") == "mes/v1/plant/gateway/gw-1/status"
    assert "mes/v1/+/+/+/+/downtime" in event_filters("mes/v1")


def test_schema_files_match_the_models() -> None:
    for name, doc in schema.documents().items():
        committed = (schema.SCHEMA_DIR / name).read_text(encoding="utf-8")
        assert committed == schema.render(doc), f"{name} drifted: run `make schema`"


def test_schema_accepts_real_events_and_rejects_mismatches() -> None:
    doc = schema.documents()["mes.event-1.json"]
    validator = jsonschema.Draft202012Validator(doc, format_checker=jsonschema.FormatChecker())
    state = Draft("state", T0, "pack", "l1", "filler", StateData(bucket="idle", since=T0))
    for draft in (count_draft(), state):
        validator.validate(json.loads(seal(draft).to_json()))
    wire = json.loads(seal(count_draft()).to_json())
    wire["type"] = "state"  # a count body under a state type
    assert list(validator.iter_errors(wire))
    wire = json.loads(seal(count_draft()).to_json())
    del wire["seq"]
    assert list(validator.iter_errors(wire))
