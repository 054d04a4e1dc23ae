"""Command JSON → OrderCommand: what is accepted, and the reason given for what is not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.orders.commands import (
    CommandError,
    check_age,
    parse_mqtt,
    parse_start,
    parse_stop,
    refusal,
    reply,
    request_id_of,
)
from rules.inputs import CommandResult, OrderCommand

NOW = datetime(2024, 5, 1, 6, 0, 0, tzinfo=UTC)


def mqtt(body: Any, *, max_age_s: float = 60.0) -> tuple[OrderCommand, str | None]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_mqtt(payload, machine="filler-1", now=NOW, max_age_s=max_age_s)


def refused(body: Any, **kwargs: Any) -> CommandError:
    with pytest.raises(CommandError) as info:
        mqtt(body, **kwargs)
    return info.value


def test_start_with_master_data() -> None:
    cmd, request_id = mqtt(
        {
            "action": "start",
            "order_id": "WO-2024/0815",
            "product": "Bottle 0.5 l",
            "quantity": 12000,
            "ideal_cycle_time_s": 0.5,
            "request_id": "r-1",
        }
    )
    assert cmd == OrderCommand(
        machine="filler-1",
        action="start",
        ts=NOW,
        origin="mqtt",
        order_id="WO-2024/0815",
        product="Bottle 0.5 l",
        quantity=12000,
        ideal_cycle_time_s=0.5,
    )
    assert request_id == "r-1"


def test_stop_without_order_stops_whatever_runs() -> None:
    cmd, request_id = mqtt({"action": "stop"})
    assert (cmd.action, cmd.order_id, cmd.machine, request_id) == ("stop", None, "filler-1", None)


def test_the_command_takes_effect_when_received_not_when_sent() -> None:
    sent = NOW - timedelta(seconds=5)
    cmd, _ = mqtt({"action": "stop", "sent_at": sent.isoformat()})
    assert cmd.ts == NOW


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "empty payload: a command is a JSON object"),
        (b"{nope", "payload is not JSON"),
        (b"\xff\xfe", "payload is not UTF-8 text"),
        ([1, 2], "payload must be a JSON object"),
        ({"order_id": "A"}, "action: required"),
        ({"action": "pause", "order_id": "A"}, "action: must be one of start, stop"),
        ({"action": "start"}, "order_id: required to start an order"),
        ({"action": "start", "order_id": ""}, "order_id: String should have at least 1 char"),
        ({"action": "start", "order_id": " A"}, "order_id: must be printable text"),
        ({"action": "start", "order_id": "A\nB"}, "order_id: must be printable text"),
        ({"action": "start", "order_id": "A" * 65}, "order_id: String should have at most 64"),
        ({"action": "start", "order_id": 4711}, "order_id: Input should be a valid string"),
        ({"action": "start", "order_id": "A", "quantity": "5"}, "quantity: must be an integer"),
        ({"action": "start", "order_id": "A", "quantity": 5.0}, "quantity: must be an integer"),
        ({"action": "start", "order_id": "A", "quantity": True}, "quantity: must be an integer"),
        ({"action": "start", "order_id": "A", "quantity": 0}, "quantity: Input should be greater"),
        (
            {"action": "start", "order_id": "A", "quantity": 10**13},
            "quantity: Input should be less",
        ),
        ({"action": "start", "order_id": "A", "ideal_cycle_time_s": -1}, "ideal_cycle_time_s:"),
        ({"action": "start", "order_id": "A", "colour": "red"}, "colour: unknown field"),
        ({"action": "stop", "quantity": 5}, "quantity: only for start"),
        ({"action": "stop", "ts": "2024-05-01T06:00:00"}, "ts: must be an ISO-8601 time with"),
        (
            {"action": "stop", "ts": NOW.isoformat(), "sent_at": NOW.isoformat()},
            "give ts or sent_at, not both",
        ),
        ({"action": "stop", "machine": "capper-1"}, "machine: 'capper-1' does not match"),
    ],
)
def test_refusals_say_what_is_wrong(body: Any, error: str) -> None:
    assert refused(body).error.startswith(error)


def test_every_wrong_field_is_named_at_once() -> None:
    err = refused({"action": "start", "order_id": "A", "quantity": "x", "colour": 1})
    assert err.error == "quantity: must be an integer; colour: unknown field"


def test_non_finite_cycle_time_is_refused() -> None:
    err = refused(b'{"action": "start", "order_id": "A", "ideal_cycle_time_s": NaN}')
    assert err.error.startswith("ideal_cycle_time_s:")


def test_request_id_is_echoed_even_when_the_rest_is_wrong() -> None:
    assert refused({"action": "pause", "request_id": "r-9"}).request_id == "r-9"
    assert request_id_of(b'{"request_id": "r-7", "action": 3}') == "r-7"
    assert request_id_of(b'{"request_id": 7}') is None
    assert request_id_of(b"not json") is None


def test_oversized_payload_is_refused() -> None:
    body = {"action": "stop", "request_id": "r", "pad": "x" * 20_000}
    assert "too large" in refused(body).error


@pytest.mark.parametrize("key", ["ts", "sent_at"])
def test_stale_command_is_refused(key: str) -> None:
    sent = (NOW - timedelta(seconds=61)).isoformat()
    err = refused({"action": "stop", key: sent, "request_id": "r-2"})
    assert err.error.startswith("command is stale: sent 61.0 s ago, limit 60 s")
    assert err.request_id == "r-2"


def test_fresh_command_with_offset_is_accepted() -> None:
    sent = (NOW - timedelta(seconds=59)).astimezone().isoformat()
    cmd, _ = mqtt({"action": "stop", "ts": sent})
    assert cmd.action == "stop"


def test_command_from_the_future_is_refused() -> None:
    sent = (NOW + timedelta(minutes=5)).isoformat()
    assert "check the sender's clock" in refused({"action": "stop", "ts": sent}).error


def test_max_age_zero_disables_the_check() -> None:
    check_age(NOW - timedelta(days=3), NOW, 0)
    cmd, _ = mqtt({"action": "stop", "ts": "2020-01-01T00:00:00Z"}, max_age_s=0)
    assert cmd.action == "stop"


def test_http_start_and_stop_bodies() -> None:
    start, request_id = parse_start(
        b'{"order_id": "WO-1", "quantity": 10, "request_id": "h-1"}',
        machine="capper-1",
        now=NOW,
        origin="cli",
    )
    assert (start.action, start.order_id, start.quantity, start.origin) == (
        "start",
        "WO-1",
        10,
        "cli",
    )
    assert request_id == "h-1"
    stop, _ = parse_stop(b"", machine="capper-1", now=NOW, origin="http")
    assert (stop.action, stop.order_id) == ("stop", None)
    stop, _ = parse_stop(b'{"order_id": "WO-1"}', machine="capper-1", now=NOW, origin="http")
    assert stop.order_id == "WO-1"


def test_http_bodies_refuse_what_does_not_belong() -> None:
    with pytest.raises(CommandError, match="action: unknown field"):
        parse_start(b'{"order_id": "A", "action": "start"}', machine="m", now=NOW, origin="http")
    with pytest.raises(CommandError, match="quantity: unknown field"):
        parse_stop(b'{"quantity": 3}', machine="m", now=NOW, origin="http")
    with pytest.raises(CommandError, match="order_id: required"):
        parse_start(b"{}", machine="m", now=NOW, origin="http")


def test_reply_shapes() -> None:
    ok = reply(CommandResult(True, "filler-1", "WO-1", "running"), "r-1")
    assert ok == {
        "ok": True,
        "machine": "filler-1",
        "order_id": "WO-1",
        "status": "running",
        "error": None,
        "request_id": "r-1",
    }
    no = refusal("filler-1", "payload is not JSON", None)
    assert no.keys() == ok.keys() and no["ok"] is False and no["error"] == "payload is not JSON"
