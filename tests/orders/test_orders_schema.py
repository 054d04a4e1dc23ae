"""The published JSON Schemas of the order command and reply stay in step with the code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from gateway.orders.commands import CommandError, parse_mqtt, refusal, reply
from gateway.orders.schema import SCHEMA_DIR, documents
from gateway.schema import render
from rules.inputs import CommandResult

NOW = datetime(2024, 5, 1, 6, 0, 0, tzinfo=UTC)


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return loaded


def test_files_match_the_models() -> None:
    for name, doc in documents().items():
        path = SCHEMA_DIR / name
        assert path.read_text(encoding="utf-8") == render(doc), (
            f"{path} is stale: run `python -m gateway.orders.schema`"
        )
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(documents())


@pytest.mark.parametrize(
    "body",
    [
        {"action": "start", "order_id": "WO-1"},
        {"action": "start", "order_id": "WO 2024/1", "product": "P", "quantity": 5},
        {"action": "start", "order_id": "A", "ideal_cycle_time_s": 0.5, "request_id": "r"},
        {"action": "stop"},
        {"action": "stop", "order_id": "A", "sent_at": "2024-05-01T05:59:59Z"},
        {"action": "start"},
        {"action": "start", "order_id": ""},
        {"action": "start", "order_id": " A"},
        {"action": "start", "order_id": "A", "quantity": "5"},
        {"action": "start", "order_id": "A", "quantity": 0},
        {"action": "start", "order_id": "A", "ideal_cycle_time_s": 0},
        {"action": "start", "order_id": "A", "colour": "red"},
        {"action": "stop", "quantity": 3},
        {"action": "stop", "ts": "2024-05-01T06:00:00Z", "sent_at": "2024-05-01T06:00:00Z"},
        {"action": "pause"},
        {"order_id": "A"},
    ],
)
def test_schema_and_parser_agree(body: dict[str, Any]) -> None:
    """What the schema accepts, the gateway accepts, and the other way round."""
    try:
        jsonschema.validate(body, schema("mes.order-command-1.json"))
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    try:
        parse_mqtt(json.dumps(body).encode(), machine="m", now=NOW, max_age_s=60)
        parser_ok = True
    except CommandError:
        parser_ok = False
    assert schema_ok == parser_ok


def test_replies_match_the_reply_schema() -> None:
    reply_schema = schema("mes.order-reply-1.json")
    jsonschema.validate(reply(CommandResult(True, "m", "WO-1", "running"), "r"), reply_schema)
    jsonschema.validate(refusal(None, "payload is not JSON", None), reply_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"ok": True}, reply_schema)
