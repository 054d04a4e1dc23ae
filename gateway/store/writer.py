"""Writing received events and dead letters to the store.

`write_batch` is the recorder's path: one transaction per batch, COPY into a per-session
staging table, then one INSERT … ON CONFLICT DO NOTHING into `events`, so redeliveries (same
event_id) are dropped by the primary key, within a batch as well as across batches. The
typed tables (counts, state intervals, downtimes, work orders, shifts) are derived from the
same staging rows in the same transaction (`typed.py`), set-based and idempotent. Only COPY
and single statements are used: PGlite, the TimescaleDB test harness, drops the connection on
asyncpg's pipelined executemany.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from gateway.errors import StoreError
from gateway.events import Event, now_utc
from gateway.store.db import rowcount
from gateway.store.typed import STAGING, write_typed

EVENT_COLUMNS = (
    "event_id",
    "ts",
    "type",
    "gateway",
    "seq",
    "site",
    "area",
    "line",
    "machine",
    "order_id",
    "shift_id",
    "data",
    "topic",
)
DEAD_LETTER_COLUMNS = ("received_at", "topic", "payload", "error")

DEAD_STAGING = "mesgw_dead_letters_staging"

# Created once per session and emptied at every commit, rather than created and dropped per
# batch: no catalog churn, and asyncpg's cached COPY introspection stays valid.
_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGING} (
    event_id uuid,
    ts       timestamptz,
    type     text,
    gateway  text,
    seq      bigint,
    site     text,
    area     text,
    line     text,
    machine  text,
    order_id text,
    shift_id text,
    data     jsonb,
    topic    text
) ON COMMIT DELETE ROWS
"""

_CREATE_DEAD_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {DEAD_STAGING} (
    received_at timestamptz,
    topic       text,
    payload     bytea,
    error       text
) ON COMMIT DELETE ROWS
"""
_DEAD_COLUMN_LIST = ", ".join(DEAD_LETTER_COLUMNS)
# A redelivered batch (acks lost after the commit) must not store its dead letters twice.
_MERGE_DEAD = (
    f"INSERT INTO dead_letters ({_DEAD_COLUMN_LIST}) SELECT {_DEAD_COLUMN_LIST}"
    f" FROM {DEAD_STAGING} ON CONFLICT DO NOTHING"
)

_COLUMN_LIST = ", ".join(EVENT_COLUMNS)
_MERGE = (
    f"INSERT INTO events ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {STAGING}"
    " ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class Received:
    event: Event  # validated envelope
    payload: bytes  # raw JSON bytes as received
    topic: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    payload: bytes
    error: str
    received_at: datetime


def _record(item: Received) -> tuple[Any, ...] | str:
    """The staging row of one event, or why PostgreSQL could not store it.

    PostgreSQL text and jsonb cannot hold U+0000, which JSON (and so a valid envelope) can; one
    such event would fail its whole batch, and the batch would fail again on every retry.
    """
    e = item.event
    # The validated model, not the bytes received: a publisher may send "5" for 5 or leave
    # out a defaulted field, and the stored data must read the same either way.
    data = e.data.model_dump_json()
    texts = {
        "gateway": e.gateway,
        "site": e.site,
        "area": e.area,
        "line": e.line,
        "machine": e.machine,
        "order": e.order,
        "shift": e.shift,
        "topic": item.topic,
    }
    for name, value in texts.items():
        if value is not None and "\x00" in value:
            return f"unstorable: {name} contains U+0000, which PostgreSQL text cannot hold"
    # The cheap test first: JSON escapes U+0000 as \u0000 (also matched by an escaped
    # backslash followed by "u0000", hence the exact check).
    if "\\u0000" in data and _has_nul(e.data.model_dump()):
        return "unstorable: data contains U+0000, which PostgreSQL jsonb cannot hold"
    return (
        e.event_id,
        e.ts,
        e.type,
        e.gateway,
        e.seq,
        e.site,
        e.area,
        e.line,
        e.machine,
        e.order,
        e.shift,
        data,
        item.topic,
    )


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _clean(text: str) -> str:
    # Dead-letter topic and error are text columns too; the payload (bytea) stays exact.
    return text.replace("\x00", "\ufffd")


async def write_batch(
    conn: asyncpg.Connection, events: Sequence[Received], dead: Sequence[DeadLetter]
) -> int:
    """Store `events`, their typed rows and `dead` letters in one transaction; returns how many
    events are new.

    Duplicates (an event_id already stored, or repeated within `events`) are ignored. An
    event PostgreSQL cannot represent (U+0000 in a string) is stored as a dead letter instead
    of failing the batch. On any error nothing of the batch is stored and StoreError is raised.
    """
    rows: list[tuple[Any, ...]] = []
    types: set[str] = set()
    letters = [(d.received_at, _clean(d.topic), d.payload, _clean(d.error)) for d in dead]
    for item in events:
        row = _record(item)
        if isinstance(row, str):
            letters.append((now_utc(), _clean(item.topic), item.payload, row))
        else:
            rows.append(row)
            types.add(item.event.type)
    if not rows and not letters:
        return 0
    try:
        async with conn.transaction():
            inserted = 0
            if rows:
                await conn.execute(_CREATE_STAGING)
                await conn.copy_records_to_table(STAGING, records=rows, columns=EVENT_COLUMNS)
                inserted = rowcount(await conn.execute(_MERGE))
                await write_typed(conn, types)
            if letters:
                await conn.execute(_CREATE_DEAD_STAGING)
                await conn.copy_records_to_table(
                    DEAD_STAGING, records=letters, columns=DEAD_LETTER_COLUMNS
                )
                await conn.execute(_MERGE_DEAD)
            return inserted
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
        raise StoreError(
            f"writing {len(rows)} events and {len(letters)} dead letters failed: {err}"
        ) from err


async def write_one_by_one(conn: asyncpg.Connection, events: Sequence[Received]) -> int:
    """The benchmark's baseline: the same writes as `write_batch`, one event per transaction."""
    inserted = 0
    for item in events:
        inserted += await write_batch(conn, [item], [])
    return inserted
