"""The typed tables, derived from the events of a batch inside its transaction.

Every statement reads the batch's staging table (`STAGING`, filled by writer.py) and writes
set-based: one statement per table and batch, none per event. Events come twice (QoS 1) and
out of order (redeliveries, recorder restarts, a gateway draining its outbox), so each table
is a pure function of the set of events received, whatever their order:

- `counts`: one row per count event, inserted once.
- `held_counts`: one row per held id, inserted once (never part of `counts`).
- `state_intervals`: one row per machine and `since`, holding the newest event (highest
  UUIDv7) for that instant; its end is the next interval's start, set when either of the
  two arrives, so a late event both closes its predecessor and takes its end from an
  already stored successor.
- `downtimes`: upserted by downtime id; descriptive fields (reason, loss, ...) from the newest
  event, end fields from the ended event with the latest end.
- `work_orders`: upserted per order and machine (one order runs on several machines at
  once, one operation each); first start, last end, fields of the newest event, and
  `running` derived per machine (the machine's newest order event is that order's start).
- `shifts`: upserted by shift id from the newest shift.started event.

Concurrent recorders (a shared subscription) take turns per machine for states and orders.
"""

from __future__ import annotations

from collections.abc import Collection

import asyncpg

# The recorder's per-session staging table of the batch's events (see writer.py).
STAGING = "mesgw_events_staging"

_MACHINE = ("site", "area", "line", "machine")
_MACHINE_COLUMNS = ", ".join(_MACHINE)
# The key of work_orders: one row per order and machine.
_OPERATION_COLUMNS = f"order_id, {_MACHINE_COLUMNS}"


def _same_machine(a: str, b: str) -> str:
    return " AND ".join(f"{a}.{c} = {b}.{c}" for c in _MACHINE)


COUNTS = f"""
INSERT INTO counts (event_id, site, area, line, machine, order_id, shift_id, interval_start,
                    interval_end, good, reject, total, quality, ideal_cycle_time_s)
SELECT event_id, site, area, line, machine, order_id, shift_id,
       (data->>'start')::timestamptz, (data->>'end')::timestamptz,
       (data->>'good')::bigint, (data->>'reject')::bigint, (data->>'total')::bigint,
       data->>'quality', (data->>'ideal_cycle_time_s')::double precision
FROM {STAGING}
WHERE type = 'count'
ON CONFLICT DO NOTHING
"""

HELD_COUNTS = f"""
INSERT INTO held_counts (held_id, event_id, site, area, line, machine, order_id, shift_id,
                         counter, role, old_raw, new_raw, claimed, plausible_max, reason,
                         seen_from, ts)
SELECT DISTINCT ON (data->>'held_id')
       data->>'held_id', event_id, site, area, line, machine, order_id, shift_id,
       data->>'counter', data->>'role', (data->>'old_raw')::bigint, (data->>'new_raw')::bigint,
       (data->>'claimed')::bigint, (data->>'plausible_max')::bigint, data->>'reason',
       (data->>'start')::timestamptz, (data->>'end')::timestamptz
FROM {STAGING}
WHERE type = 'count.held'
ORDER BY data->>'held_id', event_id
ON CONFLICT (held_id) DO NOTHING
"""

# Two events for the same machine and instant: the one emitted last (highest UUIDv7) wins,
# within the batch (DISTINCT ON) and against the stored row (the WHERE of the update).
STATES = f"""
INSERT INTO state_intervals AS s (site, area, line, machine, start_ts, bucket, code, reason,
                                  order_id, shift_id, event_id)
SELECT DISTINCT ON (site, area, line, machine, (data->>'since')::timestamptz)
       site, area, line, machine, (data->>'since')::timestamptz,
       data->>'bucket', data->>'code', data->>'reason', order_id, shift_id, event_id
FROM {STAGING}
WHERE type = 'state'
ORDER BY site, area, line, machine, (data->>'since')::timestamptz, event_id DESC
ON CONFLICT (site, area, line, machine, start_ts) DO UPDATE SET
    bucket = excluded.bucket, code = excluded.code, reason = excluded.reason,
    order_id = excluded.order_id, shift_id = excluded.shift_id, event_id = excluded.event_id
WHERE s.event_id IS NULL OR excluded.event_id > s.event_id
"""

# The intervals whose end may have changed: each one the batch wrote, and the one before it.
# Each gets the start of its successor (NULL: still open), found by the primary key index.
STATE_ENDS = f"""
WITH touched AS (
    SELECT DISTINCT site, area, line, machine, (data->>'since')::timestamptz AS start_ts
    FROM {STAGING}
    WHERE type = 'state'
), targets AS (
    SELECT site, area, line, machine, start_ts FROM touched
    UNION
    SELECT t.site, t.area, t.line, t.machine, before.start_ts
    FROM touched t
    CROSS JOIN LATERAL (
        SELECT p.start_ts FROM state_intervals p
        WHERE {_same_machine("p", "t")} AND p.start_ts < t.start_ts
        ORDER BY p.start_ts DESC LIMIT 1
    ) before
), ends AS (
    SELECT g.*, (
        SELECT n.start_ts FROM state_intervals n
        WHERE {_same_machine("n", "g")} AND n.start_ts > g.start_ts
        ORDER BY n.start_ts LIMIT 1
    ) AS end_ts
    FROM targets g
)
UPDATE state_intervals s SET end_ts = e.end_ts
FROM ends e
WHERE {_same_machine("s", "e")} AND s.start_ts = e.start_ts
  AND s.end_ts IS DISTINCT FROM e.end_ts
"""

_DOWNTIME_FIELDS = (
    "site",
    "area",
    "line",
    "machine",
    "start_ts",
    "reason_code",
    "reason_text",
    "category",
    "planned",
    "source",
    "loss",
    "order_id",
    "shift_id",
    "event_ts",
    "event_rank",
    "event_id",
)
_DOWNTIME_END_FIELDS = ("end_ts", "duration_s", "micro_stop", "end_event_id")
_DOWNTIME_NEWER = (
    "(d.event_id IS NULL OR (excluded.event_ts, excluded.event_rank, excluded.event_id)"
    " > (d.event_ts, d.event_rank, d.event_id))"
)
_DOWNTIME_LATER_END = (
    "(excluded.end_ts IS NOT NULL AND (d.end_ts IS NULL OR d.end_event_id IS NULL"
    " OR (excluded.end_ts, excluded.end_event_id) > (d.end_ts, d.end_event_id)))"
)


def _take_if(condition: str, columns: tuple[str, ...], table: str) -> str:
    return ",\n    ".join(
        f"{c} = CASE WHEN {condition} THEN excluded.{c} ELSE {table}.{c} END" for c in columns
    )


DOWNTIMES = f"""
WITH ev AS (
    SELECT data->>'downtime_id' AS downtime_id, event_id, ts, site, area, line, machine,
           order_id, shift_id, data,
           CASE type WHEN 'downtime.started' THEN 0 WHEN 'downtime.updated' THEN 1 ELSE 2 END
               AS rank
    FROM {STAGING}
    WHERE type IN ('downtime.started', 'downtime.updated', 'downtime.ended')
), newest AS (
    SELECT DISTINCT ON (downtime_id) *
    FROM ev
    ORDER BY downtime_id, ts DESC, rank DESC, event_id DESC
), ended AS (
    SELECT DISTINCT ON (downtime_id) downtime_id, event_id,
           (data->>'end')::timestamptz AS end_ts,
           (data->>'duration_s')::double precision AS duration_s,
           (data->>'micro_stop')::boolean AS micro_stop
    FROM ev
    WHERE data->>'end' IS NOT NULL
    ORDER BY downtime_id, (data->>'end')::timestamptz DESC, event_id DESC
)
INSERT INTO downtimes AS d (downtime_id, {", ".join(_DOWNTIME_FIELDS)},
                            {", ".join(_DOWNTIME_END_FIELDS)})
SELECT n.downtime_id, n.site, n.area, n.line, n.machine, (n.data->>'start')::timestamptz,
       n.data->>'reason_code', n.data->>'reason_text', n.data->>'category',
       (n.data->>'planned')::boolean, n.data->>'source', n.data->>'loss', n.order_id,
       n.shift_id,
       n.ts, n.rank, n.event_id,
       e.end_ts, e.duration_s, e.micro_stop, e.event_id
FROM newest n LEFT JOIN ended e USING (downtime_id)
ON CONFLICT (downtime_id) DO UPDATE SET
    {_take_if(_DOWNTIME_NEWER, _DOWNTIME_FIELDS, "d")},
    {_take_if(_DOWNTIME_LATER_END, _DOWNTIME_END_FIELDS, "d")},
    updated_at = now()
WHERE {_DOWNTIME_NEWER} OR {_DOWNTIME_LATER_END}
"""

# Order events of one order on one machine: a later ts wins; at the same ts the end beats
# the start.
_ORDER_NEWER = (
    "(w.last_event_id IS NULL OR (excluded.last_event_ts,"
    " excluded.last_event_type = 'order.ended', excluded.last_event_id)"
    " > (w.last_event_ts, w.last_event_type = 'order.ended', w.last_event_id))"
)
_ORDER_FIELDS = ("origin", "last_event_ts", "last_event_type", "last_event_id")
# Details the newest event may leave out keep the value an older event or the schedule gave:
# within a batch the newest event that has one gives it (whether the batch holds the start
# and end together or apart); against the row, a newer batch's value replaces the stored one
# and an older batch's only fills a gap.
_ORDER_DETAILS = ("product", "quantity", "ideal_cycle_time_s")
_ORDER_DETAIL_TYPES = {"product": "text", "quantity": "bigint", "ideal_cycle_time_s": "float8"}
_ORDER_DETAILS_NEWEST = ",\n           ".join(
    f"(array_agg((data->>'{c}')::{_ORDER_DETAIL_TYPES[c]}"
    f" ORDER BY ts DESC, type = 'order.ended' DESC, event_id DESC)"
    f" FILTER (WHERE data->>'{c}' IS NOT NULL))[1] AS {c}"
    for c in _ORDER_DETAILS
)
_ORDER_DETAILS_SET = ",\n    ".join(
    f"{c} = CASE WHEN {_ORDER_NEWER} THEN coalesce(excluded.{c}, w.{c})"
    f" ELSE coalesce(w.{c}, excluded.{c}) END"
    for c in _ORDER_DETAILS
)

# New and changed rows get a provisional status: an order whose newest event is a start is
# 'completed' until ORDER_PROMOTE promotes it, so the one-running-order-per-machine index
# never sees two running orders, even for a moment.
WORK_ORDERS = f"""
WITH ev AS (
    SELECT data->>'order_id' AS order_id, event_id, ts, type, site, area, line, machine, data
    FROM {STAGING}
    WHERE type IN ('order.started', 'order.ended')
), newest AS (
    SELECT DISTINCT ON ({_OPERATION_COLUMNS}) *
    FROM ev
    ORDER BY {_OPERATION_COLUMNS}, ts DESC, type = 'order.ended' DESC, event_id DESC
), span AS (
    SELECT {_OPERATION_COLUMNS},
           min(ts) FILTER (WHERE type = 'order.started') AS started_at,
           max(ts) FILTER (WHERE type = 'order.ended') AS ended_at,
           {_ORDER_DETAILS_NEWEST}
    FROM ev
    GROUP BY {_OPERATION_COLUMNS}
)
INSERT INTO work_orders AS w ({_OPERATION_COLUMNS}, product, quantity,
                              ideal_cycle_time_s, status, origin, started_at, ended_at,
                              last_event_ts, last_event_type, last_event_id)
SELECT n.order_id, n.site, n.area, n.line, n.machine, s.product, s.quantity,
       s.ideal_cycle_time_s,
       CASE WHEN n.data->>'status' = 'confirmed' THEN 'confirmed' ELSE 'completed' END,
       n.data->>'origin', s.started_at, s.ended_at, n.ts, n.type, n.event_id
FROM newest n JOIN span s USING ({_OPERATION_COLUMNS})
ON CONFLICT ({_OPERATION_COLUMNS}) DO UPDATE SET
    {_take_if(_ORDER_NEWER, _ORDER_FIELDS, "w")},
    {_ORDER_DETAILS_SET},
    status = CASE WHEN w.status = 'confirmed' THEN 'confirmed'
                  WHEN {_ORDER_NEWER} THEN excluded.status
                  ELSE w.status END,
    started_at = least(w.started_at, excluded.started_at),
    ended_at = greatest(w.ended_at, excluded.ended_at),
    updated_at = now()
WHERE {_ORDER_NEWER}
   OR excluded.started_at < coalesce(w.started_at, 'infinity')
   OR excluded.ended_at > coalesce(w.ended_at, '-infinity')
"""

# Per machine the batch touched: the order whose row there holds the machine's newest order
# event runs if that event is a start; every other order's row there is completed (the same
# order's rows on other machines are their machines' business). At the same instant a start
# beats an end (one order ends as the next begins). Demote first, then promote: the unique
# index is checked row by row.
_RUNNING_CANDIDATES = f"""
WITH machines AS (
    SELECT DISTINCT {_MACHINE_COLUMNS}
    FROM {STAGING}
    WHERE type IN ('order.started', 'order.ended')
), newest AS (
    SELECT DISTINCT ON (w.site, w.area, w.line, w.machine)
           w.order_id, w.site, w.area, w.line, w.machine, w.last_event_type
    FROM work_orders w JOIN machines m USING ({_MACHINE_COLUMNS})
    WHERE w.last_event_id IS NOT NULL
    ORDER BY w.site, w.area, w.line, w.machine,
             w.last_event_ts DESC, w.last_event_type = 'order.started' DESC,
             w.last_event_id DESC
), runs AS (
    SELECT {_OPERATION_COLUMNS} FROM newest WHERE last_event_type = 'order.started'
)
"""
ORDER_DEMOTE = f"""{_RUNNING_CANDIDATES}
UPDATE work_orders w SET status = 'completed', updated_at = now()
FROM machines m
WHERE {_same_machine("w", "m")} AND w.status = 'running'
  AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.order_id = w.order_id
                                         AND {_same_machine("r", "w")})
"""
ORDER_PROMOTE = f"""{_RUNNING_CANDIDATES}
UPDATE work_orders w SET status = 'running', updated_at = now()
FROM runs r
WHERE w.order_id = r.order_id AND {_same_machine("w", "r")} AND w.status = 'completed'
"""

SHIFTS = f"""
INSERT INTO shifts AS s (shift_id, calendar, name, start_ts, end_ts, breaks, event_ts, event_id)
SELECT DISTINCT ON (data->>'shift_id')
       data->>'shift_id', data->>'calendar', data->>'name',
       (data->>'start')::timestamptz, (data->>'end')::timestamptz, data->'breaks', ts, event_id
FROM {STAGING}
WHERE type = 'shift.started'
ORDER BY data->>'shift_id', ts DESC, event_id DESC
ON CONFLICT (shift_id) DO UPDATE SET
    calendar = excluded.calendar, name = excluded.name, start_ts = excluded.start_ts,
    end_ts = excluded.end_ts, breaks = excluded.breaks, event_ts = excluded.event_ts,
    event_id = excluded.event_id
WHERE s.event_id IS NULL OR (excluded.event_ts, excluded.event_id) > (s.event_ts, s.event_id)
"""

# Recorders sharing a subscription write concurrently. An interval's end and the running
# order are derived from the other rows of the same machine, which a concurrent transaction
# may be changing unseen; so batches touching the same machine's states or orders take turns,
# on transaction-scoped advisory locks taken in one order (no deadlock between them). The
# two-key form keeps them apart from the migration lock.
LOCK_CLASS = int.from_bytes(b"mesg", "big")  # fits int4
MACHINE_LOCKS = f"""
SELECT pg_advisory_xact_lock({LOCK_CLASS}, machines.key)
FROM (
    SELECT DISTINCT hashtext(concat_ws('/', site, area, line, machine)) AS key
    FROM {STAGING}
    WHERE type IN ('state', 'order.started', 'order.ended')
    ORDER BY 1
) machines
"""

# Statements per event type present in a batch, in the order they run.
_STATEMENTS: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = (
    (frozenset({"state", "order.started", "order.ended"}), (MACHINE_LOCKS,)),
    (frozenset({"count"}), (COUNTS,)),
    (frozenset({"count.held"}), (HELD_COUNTS,)),
    (frozenset({"state"}), (STATES, STATE_ENDS)),
    (frozenset({"downtime.started", "downtime.updated", "downtime.ended"}), (DOWNTIMES,)),
    (frozenset({"order.started", "order.ended"}), (WORK_ORDERS, ORDER_DEMOTE, ORDER_PROMOTE)),
    (frozenset({"shift.started"}), (SHIFTS,)),
)


async def write_typed(conn: asyncpg.Connection, types: Collection[str]) -> None:
    """Derive the typed rows of the staged events (of `types`); call inside the transaction."""
    for kinds, statements in _STATEMENTS:
        if not kinds.isdisjoint(types):
            for sql in statements:
                await conn.execute(sql)
