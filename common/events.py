"""The event contract (`mes.event/1`): the envelope and the data of each event type, and the
draft the rules make of an event. The daemon (gateway.events) adds ids and MQTT topics;
the JSON Schema files are generated from these models (`python -m gateway.schema`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    WithJsonSchema,
    model_validator,
)

SCHEMA: Final = "mes.event/1"

CountQuality = Literal["ok", "wrap", "reset", "gap", "spike", "restart"]
StateBucket = Literal[
    "running",
    "idle",
    "starved",
    "blocked",
    "down",
    "changeover",
    "planned_stop",
    "not_scheduled",
    "unknown",
]
EventType = Literal[
    "count",
    "count.held",
    "state",
    "downtime.started",
    "downtime.updated",
    "downtime.ended",
    "order.started",
    "order.ended",
    "shift.started",
]


def _iso_ms(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc_ms(ts: datetime) -> datetime:
    # Runs for every timestamp of every received event: the common case (already UTC,
    # whole milliseconds) must cost no more than the checks.
    if ts.utcoffset() is None:
        raise ValueError("timestamp must carry a time zone (UTC)")
    sub_ms = ts.microsecond % 1000
    return ts.replace(microsecond=ts.microsecond - sub_ms) if sub_ms else ts


# ISO-8601 UTC with milliseconds, as the contract says; naive datetimes are refused.
Timestamp = Annotated[
    datetime,
    AfterValidator(_utc_ms),
    PlainSerializer(_iso_ms, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "description": "ISO-8601 UTC, milliseconds"}
    ),
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CountData(_Frozen):
    good: int = Field(ge=0)
    reject: int = Field(ge=0)
    total: int = Field(ge=0)
    start: Timestamp
    end: Timestamp
    quality: CountQuality = "ok"
    ideal_cycle_time_s: float | None = Field(
        None, gt=0, description="in force for these parts (order's, else machine's); for OEE"
    )


class HeldCountData(_Frozen):
    """A counter change the rules cannot vouch for: kept out of every total until a clerk
    accepts (all or part of) it or rejects it."""

    held_id: str = Field(min_length=1, description="<machine>-<counter tag>-<reading ms>, stable")
    counter: str = Field(min_length=1, description="the counter tag")
    role: Literal["good_count", "reject_count", "total_count"]
    old_raw: int = Field(ge=0, description="the last accepted raw value")
    new_raw: int = Field(ge=0, description="the raw value of this reading")
    claimed: int = Field(ge=0, description="the parts this change would add if counted")
    plausible_max: int | None = Field(
        None, ge=0, description="most parts the machine can make over [start, end]; none known"
    )
    reason: Literal["spike", "decrease"] = Field(
        description="spike: faster than plausible; decrease: neither a provable wrap nor a "
        "reset to zero (e.g. back at a preset after a PLC restart)"
    )
    start: Timestamp = Field(description="when the old value was last seen")
    end: Timestamp = Field(description="the reading that showed the new value")


class StateData(_Frozen):
    bucket: StateBucket
    code: int | str | None = Field(None, description="the source state code as the PLC gave it")
    reason: str | None = None
    since: Timestamp


class DowntimeData(_Frozen):
    downtime_id: str = Field(min_length=1, description="stable across gateway restarts")
    start: Timestamp
    end: Timestamp | None = None
    duration_s: float | None = Field(None, ge=0)
    reason_code: str | None = None
    reason_text: str | None = None
    category: str | None = None
    planned: bool = False
    source: Literal["auto", "clerk"] = "auto"
    micro_stop: bool | None = Field(
        None, description="set when ended: shorter than the machine's micro_stop_s"
    )
    loss: Literal["availability", "performance", "planned"] | None = Field(
        None,
        description="OEE factor the time is charged to: the reason's loss bucket; a "
        "micro-stop's is rules.micro_stop_loss; planned = excluded from planned busy time",
    )


class OrderData(_Frozen):
    order_id: str = Field(min_length=1)
    product: str | None = None
    quantity: int | None = Field(None, ge=0)
    ideal_cycle_time_s: float | None = Field(None, gt=0)
    status: Literal["planned", "running", "completed", "confirmed"]
    origin: Literal["mqtt", "http", "cli", "plc", "schedule", "synthetic"] = "mqtt"


class ShiftBreak(_Frozen):
    start: Timestamp
    end: Timestamp


class ShiftData(_Frozen):
    shift_id: str = Field(min_length=1, description="unique per calendar and shift occurrence")
    calendar: str = Field(min_length=1)
    name: str | None = None
    start: Timestamp
    end: Timestamp
    breaks: list[ShiftBreak] = Field(default_factory=list)


DATA_MODELS: dict[str, type[_Frozen]] = {
    "count": CountData,
    "count.held": HeldCountData,
    "state": StateData,
    "downtime.started": DowntimeData,
    "downtime.updated": DowntimeData,
    "downtime.ended": DowntimeData,
    "order.started": OrderData,
    "order.ended": OrderData,
    "shift.started": ShiftData,
}


def _data_shape(value: Any) -> str | None:
    # Tells the shape from its one distinguishing key, so only that model is validated;
    # trying every member of the union would build three failures per event received.
    if isinstance(value, dict):
        for key, shape in _SHAPE_KEYS:
            if key in value:
                return shape
        return "CountData"
    return type(value).__name__


_SHAPE_KEYS = (
    ("held_id", "HeldCountData"),
    ("bucket", "StateData"),
    ("downtime_id", "DowntimeData"),
    ("order_id", "OrderData"),
    ("shift_id", "ShiftData"),
)

EventData = Annotated[
    Annotated[CountData, Tag("CountData")]
    | Annotated[HeldCountData, Tag("HeldCountData")]
    | Annotated[StateData, Tag("StateData")]
    | Annotated[DowntimeData, Tag("DowntimeData")]
    | Annotated[OrderData, Tag("OrderData")]
    | Annotated[ShiftData, Tag("ShiftData")],
    Discriminator(_data_shape),
]


class Event(_Frozen):
    """The envelope every published production event carries."""

    schema_: Literal["mes.event/1"] = Field(SCHEMA, alias="schema")
    event_id: uuid.UUID
    type: EventType
    ts: Timestamp
    gateway: str = Field(min_length=1)
    seq: int = Field(ge=0)
    site: str = Field(min_length=1)
    area: str = Field(min_length=1)
    line: str = Field(min_length=1)
    machine: str = Field(min_length=1)
    order: str | None = None
    shift: str | None = None
    data: EventData

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _data_matches_type(self) -> Event:
        # The union picks the data shape by its fields (each forbids extra keys); the type
        # must name that same shape, so a count body never passes as a state.
        if type(self.data) is not DATA_MODELS[self.type]:
            raise ValueError(f"data does not match type {self.type!r}")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        return cls.model_validate_json(raw)


@dataclass(frozen=True, slots=True)
class Draft:
    """An event as the rules produce it: everything but the gateway-assigned `seq` and id."""

    type: EventType
    ts: datetime
    area: str
    line: str
    machine: str
    data: CountData | StateData | DowntimeData | OrderData | ShiftData
    order: str | None = None
    shift: str | None = None

    def seal(self, *, event_id: uuid.UUID, seq: int, gateway: str, site: str) -> Event:
        return Event(
            event_id=event_id,
            type=self.type,
            ts=self.ts,
            gateway=gateway,
            seq=seq,
            site=site,
            area=self.area,
            line=self.line,
            machine=self.machine,
            order=self.order,
            shift=self.shift,
            data=self.data,
        )
