"""The event contract (`mes.event/1`): envelope, per-type data, ids, and MQTT topic mapping.

These models are the public contract (gateway/schemas/CONTRACT.md); `gateway/schemas/*.json`
is generated from them (`python -m gateway.schema`) and a test fails when the two drift.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

# The contract's models live in common.events (the rules make drafts of them); their names
# stay importable from here.
from common.events import DATA_MODELS as DATA_MODELS
from common.events import SCHEMA as SCHEMA
from common.events import CountData as CountData
from common.events import CountQuality as CountQuality
from common.events import DowntimeData as DowntimeData
from common.events import Draft as Draft
from common.events import Event as Event
from common.events import EventData as EventData
from common.events import EventType as EventType
from common.events import HeldCountData as HeldCountData
from common.events import OrderData as OrderData
from common.events import ShiftBreak as ShiftBreak
from common.events import ShiftData as ShiftData
from common.events import StateBucket as StateBucket
from common.events import StateData as StateData
from common.events import Timestamp as Timestamp


class _UUID7:
    """RFC 9562 UUIDv7: 48-bit ms timestamp, 12-bit sub-ms counter (method 1), 62 random bits.

    Strictly increasing within this process, even when the clock steps back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def __call__(self, now_ms: int | None = None) -> uuid.UUID:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                self._counter += 1
                if self._counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                    ms += 1
                    self._counter = 0
            else:
                self._counter = int.from_bytes(os.urandom(2)) & 0x3FF  # leave room to count
            self._last_ms = ms
            counter = self._counter
        rand = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80
        value |= 0x7 << 76
        value |= counter << 64
        value |= 0b10 << 62
        value |= rand
        return uuid.UUID(int=value)


uuid7 = _UUID7()


def uuid7_time(u: uuid.UUID) -> datetime:
    """The creation time embedded in a UUIDv7."""
    return datetime.fromtimestamp((u.int >> 80) / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class Publication:
    topic: str
    payload: bytes
    retain: bool


def publications(event: Event, prefix: str) -> list[Publication]:
    """The MQTT messages one event becomes, per the contract's topic table, in send order.

    Event messages are never retained (so every subscriber sees each event once); the
    retained "current value" topics are published beside them, and cleared with an empty
    retained message when the thing they describe ends.
    """
    root = f"{prefix}/{event.site}/{event.area}/{event.line}/{event.machine}"
    body = event.to_json()
    kind = event.type
    if kind in ("count", "count.held"):
        return [Publication(f"{root}/count", body, False)]
    if kind == "state":
        return [Publication(f"{root}/state", body, True)]
    if kind in ("downtime.started", "downtime.updated"):
        return [
            Publication(f"{root}/downtime", body, False),
            Publication(f"{root}/downtime/active", body, True),
        ]
    if kind == "downtime.ended":
        return [
            Publication(f"{root}/downtime", body, False),
            Publication(f"{root}/downtime/active", b"", True),
        ]
    if kind == "order.started":
        return [Publication(f"{root}/order", body, True)]
    if kind == "shift.started":
        return [Publication(f"{root}/shift", body, True)]
    # order.ended: the event itself, then clear the retained active order.
    return [Publication(f"{root}/order", body, False), Publication(f"{root}/order", b"", True)]


def status_topic(prefix: str, site: str, gateway_id: str) -> str:
    return f"{prefix}/{site}/gateway/{gateway_id}/status"


# The topic filters a recorder subscribes to: every event topic, none of the retained copies.
EVENT_TOPIC_SUFFIXES = ("count", "state", "downtime", "order", "shift")


def event_filters(prefix: str) -> list[str]:
    return [f"{prefix}/+/+/+/+/{suffix}" for suffix in EVENT_TOPIC_SUFFIXES]


def now_utc() -> datetime:
    return datetime.now(UTC)
