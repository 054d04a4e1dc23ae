"""Work-order commands as they arrive from outside: JSON checked field by field into OrderCommand.

Every refusal says which field is wrong and why, so the sender can fix the command without
reading the gateway's log. Numbers are strict (`"5"`, `5.0` or `true` are not a quantity):
an ERP mapping that sends the wrong type should fail on the first try, not on the odd value.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from gateway.errors import GatewayError
from rules.inputs import CommandResult, OrderCommand, OrderOrigin

# Order numbers come from ERP systems in many shapes ("4711", "WO-2024/0815"); they land in
# events and tables, not in topics, so any printable text is accepted.
_EDGE = r"[^\x00-\x20\x7f]"  # printable, not a space
OrderId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=64, pattern=rf"^{_EDGE}(?:[^\x00-\x1f\x7f]*{_EDGE})?$"
    ),
]
Product = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# The store keeps quantities as bigint; no plant makes a trillion of anything in one order.
MAX_QUANTITY = 10**12
Quantity = Annotated[int, Field(gt=0, le=MAX_QUANTITY)]
CycleTime = Annotated[float, Field(gt=0, allow_inf_nan=False)]

# A command is a few hundred bytes; anything much larger is not one.
MAX_PAYLOAD = 16 * 1024


class CommandError(GatewayError):
    """A command that cannot be applied as sent; the message is the reply's `error`."""

    def __init__(self, error: str, *, request_id: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.request_id = request_id


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StartRequest(_Body):
    """HTTP `POST …/order/start`."""

    order_id: OrderId
    product: Product | None = None
    quantity: Quantity | None = None
    ideal_cycle_time_s: CycleTime | None = None
    request_id: RequestId | None = None


class StopRequest(_Body):
    """HTTP `POST …/order/stop`: without `order_id`, stop whatever order runs."""

    order_id: OrderId | None = None
    request_id: RequestId | None = None


class MqttCommand(_Body):
    """The JSON payload on `{prefix}/{site}/{area}/{line}/{machine}/cmd/order`."""

    action: Literal["start", "stop"]
    order_id: OrderId | None = None
    product: Product | None = None
    quantity: Quantity | None = None
    ideal_cycle_time_s: CycleTime | None = None
    machine: str | None = Field(None, description="optional; must match the topic's machine")
    request_id: RequestId | None = None
    ts: AwareDatetime | None = Field(None, description="when the sender sent it (age check)")
    sent_at: AwareDatetime | None = Field(None, description="the same as ts, by another name")

    @model_validator(mode="after")
    def _fields_of_action(self) -> MqttCommand:
        if self.action == "start" and self.order_id is None:
            raise ValueError("order_id: required to start an order")
        if self.action == "stop":
            given = [
                name
                for name in ("product", "quantity", "ideal_cycle_time_s")
                if getattr(self, name) is not None
            ]
            if given:
                raise ValueError(f"{', '.join(given)}: only for start")
        if self.ts is not None and self.sent_at is not None:
            raise ValueError("give ts or sent_at, not both")
        return self


def describe(err: ValidationError) -> str:
    """One line naming every wrong field: `quantity: must be an integer; order_id: required`."""
    parts = []
    for item in err.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            text = "unknown field"
        elif kind == "missing":
            text = "required"
        elif kind == "literal_error":
            expected = str(item.get("ctx", {}).get("expected", ""))
            text = "must be one of " + expected.replace(" or ", ", ").replace("'", "")
        elif kind == "string_pattern_mismatch":
            text = "must be printable text without leading or trailing spaces"
        elif kind in ("int_type", "int_from_float", "int_parsing"):
            text = "must be an integer"
        elif kind in ("float_type", "float_parsing"):
            text = "must be a number"
        elif kind == "timezone_aware":
            text = "must be an ISO-8601 time with a UTC offset (e.g. 2024-05-01T06:00:00Z)"
        elif kind == "model_type":
            text = "must be a JSON object"
        else:
            text = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{field}: {text}" if field else text)
    return "; ".join(parts)


def _request_id(data: Any) -> str | None:
    """The sender's request id, echoed even when the rest of the command is wrong."""
    if isinstance(data, dict):
        value = data.get("request_id")
        if isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return None


def request_id_of(payload: bytes) -> str | None:
    """The request id of a payload, if it has a usable one, whatever else is wrong with it."""
    if not payload or len(payload) > MAX_PAYLOAD:
        return None
    try:
        return _request_id(json.loads(payload.decode("utf-8")))
    except ValueError:  # UnicodeDecodeError is one too
        return None


def _load(payload: bytes) -> tuple[dict[str, Any], str | None]:
    if not payload:
        raise CommandError("empty payload: a command is a JSON object")
    if len(payload) > MAX_PAYLOAD:
        raise CommandError(f"payload of {len(payload)} bytes is too large (limit {MAX_PAYLOAD})")
    try:
        # Decoded here: json.loads would also take UTF-16 and -32, the contract says UTF-8.
        data = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CommandError("payload is not UTF-8 text") from err
    except ValueError as err:
        raise CommandError(f"payload is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise CommandError("payload must be a JSON object")
    return data, _request_id(data)


def check_age(sent: datetime | None, now: datetime, max_age_s: float) -> None:
    """Refuse a command sent longer than `max_age_s` ago (or that far in the future)."""
    if sent is None or max_age_s <= 0:
        return
    age = (now - sent).total_seconds()
    if age > max_age_s:
        raise CommandError(
            f"command is stale: sent {age:.1f} s ago, limit {max_age_s:g} s "
            "(orders.command_max_age_s); send it again"
        )
    if -age > max_age_s:
        raise CommandError(
            f"command is sent {-age:.1f} s in the future (limit {max_age_s:g} s); "
            "check the sender's clock"
        )


def parse_mqtt(
    payload: bytes, *, machine: str, now: datetime, max_age_s: float
) -> tuple[OrderCommand, str | None]:
    """An MQTT command payload → (command, request id); raises CommandError."""
    _, request_id = _load(payload)
    try:
        body = MqttCommand.model_validate_json(payload)
    except ValidationError as err:
        raise CommandError(describe(err), request_id=request_id) from err
    if body.machine is not None and body.machine != machine:
        raise CommandError(
            f"machine: {body.machine!r} does not match the topic's machine {machine!r}",
            request_id=request_id,
        )
    try:
        check_age(body.sent_at or body.ts, now, max_age_s)
    except CommandError as err:
        raise CommandError(err.error, request_id=request_id) from None
    return _command(body, machine, body.action, now, "mqtt"), request_id


def _command(
    body: MqttCommand | StartRequest,
    machine: str,
    action: Literal["start", "stop"],
    now: datetime,
    origin: OrderOrigin,
) -> OrderCommand:
    return OrderCommand(
        machine=machine,
        action=action,
        ts=now,
        origin=origin,
        order_id=body.order_id,
        product=body.product,
        quantity=body.quantity,
        ideal_cycle_time_s=body.ideal_cycle_time_s,
    )


def parse_start(
    payload: bytes, *, machine: str, now: datetime, origin: OrderOrigin
) -> tuple[OrderCommand, str | None]:
    """An HTTP start body → (command, request id); raises CommandError."""
    _, request_id = _load(payload)
    try:
        body = StartRequest.model_validate_json(payload)
    except ValidationError as err:
        raise CommandError(describe(err), request_id=request_id) from err
    return _command(body, machine, "start", now, origin), request_id


def parse_stop(
    payload: bytes, *, machine: str, now: datetime, origin: OrderOrigin
) -> tuple[OrderCommand, str | None]:
    """An HTTP stop body (may be empty: stop whatever runs) → (command, request id)."""
    if not payload.strip():
        return OrderCommand(machine=machine, action="stop", ts=now, origin=origin), None
    _, request_id = _load(payload)
    try:
        body = StopRequest.model_validate_json(payload)
    except ValidationError as err:
        raise CommandError(describe(err), request_id=request_id) from err
    command = OrderCommand(
        machine=machine, action="stop", ts=now, origin=origin, order_id=body.order_id
    )
    return command, request_id


class OrderReply(BaseModel):
    """The answer to a start/stop command, on MQTT and HTTP alike."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: bool
    machine: str | None = Field(description="the machine addressed (None if not given)")
    order_id: str | None = Field(description="the order concerned")
    status: str | None = Field(
        description="the order's status after the command: planned, running, completed"
    )
    error: str | None = Field(description="why nothing happened; None when ok")
    request_id: str | None = Field(description="the command's request_id, echoed")


def reply(result: CommandResult, request_id: str | None) -> dict[str, Any]:
    """The reply body for the desk's answer."""
    return OrderReply.model_validate(
        {
            "ok": result.ok,
            "machine": result.machine,
            "order_id": result.order_id,
            "status": result.status,
            "error": result.error,
            "request_id": request_id,
        }
    ).model_dump()


def refusal(machine: str | None, error: str, request_id: str | None) -> dict[str, Any]:
    """The reply to a command that never reached the desk."""
    return OrderReply(
        ok=False, machine=machine, order_id=None, status=None, error=error, request_id=request_id
    ).model_dump()
