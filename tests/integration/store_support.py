"""Shared by the typed-table and OEE tests: a day to write events on, and a sealing plant."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.events import Draft, Event, EventType, uuid7

# `gateway.store.migrate` the attribute is the function; the module is needed to patch it.
migrate_module = importlib.import_module("gateway.store.migrate")

DAY = datetime(2025, 3, 4, tzinfo=UTC)
SHIFT = "cal-a/2025-03-04/early"


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute, seconds=second)


class Plant:
    """Seals events the way a gateway does: one sequence, UUIDv7 ids in emission order."""

    def __init__(self, gateway: str = "gw-01") -> None:
        self.gateway = gateway
        self.seq = 0
        self.events: list[Event] = []

    def emit(
        self,
        type_: EventType,
        ts: datetime,
        data: Any,
        *,
        machine: str = "m1",
        order: str | None = None,
        shift: str | None = SHIFT,
    ) -> Event:
        self.seq += 1
        draft = Draft(type_, ts, "a1", "l1", machine, data, order=order, shift=shift)
        event = draft.seal(event_id=uuid7(), seq=self.seq, gateway=self.gateway, site="s1")
        self.events.append(event)
        return event
