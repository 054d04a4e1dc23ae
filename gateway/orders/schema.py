"""JSON Schema files of the order command and its reply, generated from the models.

`python -m gateway.orders.schema` rewrites gateway/orders/schemas/*.json; a test fails when
they drift from the models in gateway/orders/commands.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.orders.commands import MqttCommand, OrderReply, StartRequest, StopRequest
from gateway.schema import main

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
_BASE = "https://mes-gateway.invalid/schema/"
_DRAFT = "https://json-schema.org/draft/2020-12/schema"


def documents() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema document."""
    command = MqttCommand.model_json_schema(mode="validation")
    command["description"] = (
        "A work-order command on {prefix}/{site}/{area}/{line}/{machine}/cmd/order "
        "(QoS 1, not retained). The reply goes to <topic>/reply and, for MQTT 5 requests "
        "with a response topic, there too with the correlation data."
    )
    # What the model checks after the fields: start needs an order; stop takes no master data.
    command["allOf"] = [
        {
            "if": {"properties": {"action": {"const": "start"}}},
            "then": {"required": ["order_id"], "properties": {"order_id": {"type": "string"}}},
        },
        {
            "if": {"properties": {"action": {"const": "stop"}}},
            "then": {
                "properties": {
                    name: {"type": "null"} for name in ("product", "quantity", "ideal_cycle_time_s")
                }
            },
        },
        {"not": {"required": ["ts", "sent_at"]}},
    ]
    reply = OrderReply.model_json_schema(mode="serialization")
    reply["description"] = (
        "The reply to a work-order command (MQTT <topic>/reply, response topic, or HTTP)."
    )
    docs = {
        "mes.order-command-1.json": command,
        "mes.order-start-request-1.json": StartRequest.model_json_schema(mode="validation"),
        "mes.order-stop-request-1.json": StopRequest.model_json_schema(mode="validation"),
        "mes.order-reply-1.json": reply,
    }
    for name, doc in docs.items():
        doc["$id"] = _BASE + name
        doc["$schema"] = _DRAFT
    return docs


if __name__ == "__main__":
    main(documents(), SCHEMA_DIR)
