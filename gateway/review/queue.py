"""The review queue: what needs a human, per line and shift.

Entries come from the shown figures (migration 0009) and the raw records they point at:

- `held`: a held count waiting for a decision (size: parts claimed); resolved by accepting
  or rejecting it.
- `flagged`: count records flagged gap / restart / reset / spike / wrap, per machine, order,
  shift and flag (parts in them); acknowledged.
- `downtime`: a downtime longer than a micro-stop with no reason (seconds); recoded.
- `quantity`: a completed order whose good + scrap is off its quantity by more than the
  tolerance (parts off); adjusted, confirmed or acknowledged.
- `mismatch`: total != good + reject (possible only where all three counters are read);
  acknowledged.
- `no_order`: time in a shift with no order (seconds); acknowledged.
- `link_down`: the machine's link was down during the shift (seconds); acknowledged.

An acknowledgement is a revision of the entry holding its fingerprint (what was seen); when
the records change (another gap record, more time without an order) the entry is back.
Entries of a confirmed order are gone with the confirmation.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from gateway.config import ReviewSection
from gateway.review.actions import Target

_QUEUE_SQL = """
WITH held AS (
    SELECT 'held' AS kind, 'held:' || h.held_id AS key, h.site, h.area, h.line, h.machine,
           h.shift_id, h.order_id, h.claimed::numeric AS size, 'parts' AS unit, h.ts AS at,
           jsonb_build_object('held_id', h.held_id, 'counter', h.counter, 'role', h.role,
                              'reason', h.reason, 'old_raw', h.old_raw, 'new_raw', h.new_raw,
                              'plausible_max', h.plausible_max) AS detail,
           to_jsonb(h.claimed) AS fingerprint,
           jsonb_build_array('/api/v1/held-counts/' || h.held_id) AS links
    FROM held_counts_shown h
    WHERE h.decision = 'pending' AND h.ts >= $1 AND h.ts < $2
), flagged AS (
    SELECT 'flagged', concat_ws(':', 'flagged', c.site, c.area, c.line, c.machine,
                                coalesce(c.shift_id, '-'), coalesce(c.order_id, '-'), c.quality),
           c.site, c.area, c.line, c.machine, c.shift_id, c.order_id,
           sum(c.total)::numeric, 'parts', min(c.interval_start),
           jsonb_build_object('quality', c.quality, 'records', count(*),
                              'event_ids', jsonb_agg(c.event_id ORDER BY c.interval_start)),
           to_jsonb(count(*)),
           jsonb_build_array('/api/v1/counts?machine=' || c.machine || '&quality=' || c.quality
                             || coalesce('&shift=' || c.shift_id, ''))
    FROM counts c
    WHERE c.quality <> 'ok' AND c.interval_start >= $1 AND c.interval_start < $2
    GROUP BY c.site, c.area, c.line, c.machine, c.shift_id, c.order_id, c.quality
), unreasoned AS (
    SELECT 'downtime', 'downtime:' || d.downtime_id, d.site, d.area, d.line, d.machine,
           d.shift_id, d.order_id,
           round(extract(epoch FROM coalesce(d.end_ts, now()) - d.start_ts)::numeric, 3),
           'seconds', d.start_ts,
           jsonb_build_object('downtime_id', d.downtime_id, 'start', d.start_ts,
                              'end', d.end_ts, 'category', d.category, 'lineage', d.lineage),
           to_jsonb(d.downtime_id),
           jsonb_build_array('/api/v1/downtimes/' || d.downtime_id)
    FROM downtimes_shown d
    WHERE d.reason_code IS NULL AND d.start_ts >= $1 AND d.start_ts < $2
      AND (d.micro_stop IS FALSE
           OR (d.micro_stop IS NULL
               AND extract(epoch FROM coalesce(d.end_ts, now()) - d.start_ts) > $3))
), quantity AS (
    SELECT 'quantity', concat_ws(':', 'quantity', o.order_id, o.site, o.area, o.line, o.machine),
           o.site, o.area, o.line, o.machine, NULL::text, o.order_id,
           (o.good + o.scrap - o.quantity)::numeric, 'parts', o.ended_at,
           jsonb_build_object('quantity', o.quantity, 'good', o.good, 'scrap', o.scrap,
                              'tolerance_pct', $4::float8),
           to_jsonb(o.good + o.scrap),
           jsonb_build_array('/api/v1/orders/' || o.order_id)
    FROM order_operations_shown($1, $2) o
    WHERE o.status = 'completed' AND o.quantity > 0 AND o.ended_at >= $1 AND o.ended_at < $2
      AND abs(o.good + o.scrap - o.quantity) > o.quantity * $4::float8 / 100
), mismatch AS (
    SELECT 'mismatch', concat_ws(':', 'mismatch', c.site, c.area, c.line, c.machine,
                                 coalesce(c.shift_id, '-')),
           c.site, c.area, c.line, c.machine, c.shift_id, NULL::text,
           (sum(c.total) - sum(c.good) - sum(c.reject))::numeric, 'parts', min(c.interval_start),
           jsonb_build_object('total', sum(c.total), 'good', sum(c.good),
                              'reject', sum(c.reject), 'records', count(*),
                              'event_ids', jsonb_agg(c.event_id ORDER BY c.interval_start)),
           to_jsonb(sum(c.total) - sum(c.good) - sum(c.reject)),
           jsonb_build_array('/api/v1/counts?machine=' || c.machine
                             || coalesce('&shift=' || c.shift_id, ''))
    FROM counts c
    -- counts_mismatch_idx: the rules keep total = good + reject in every record they make.
    WHERE c.total <> c.good + c.reject AND c.interval_start >= $1 AND c.interval_start < $2
    GROUP BY c.site, c.area, c.line, c.machine, c.shift_id
    HAVING sum(c.total) <> sum(c.good) + sum(c.reject)
), states AS (
    SELECT s.site, s.area, s.line, s.machine, s.shift_id, s.bucket, s.reason, s.start_ts,
           extract(epoch FROM least(coalesce(s.end_ts, now()), $2) - greatest(s.start_ts, $1))
               AS seconds,
           s.order_id
    FROM state_intervals s
    WHERE s.start_ts < $2 AND (s.end_ts IS NULL OR s.end_ts > $1)
      AND ((s.order_id IS NULL
            AND s.bucket NOT IN ('not_scheduled', 'unknown', 'planned_stop'))
           OR (s.bucket = 'unknown' AND s.reason LIKE 'link down%'))
), no_order AS (
    SELECT 'no_order', concat_ws(':', 'no_order', s.site, s.area, s.line, s.machine,
                                 coalesce(s.shift_id, '-')),
           s.site, s.area, s.line, s.machine, s.shift_id, NULL::text,
           round(sum(s.seconds)::numeric, 3), 'seconds', min(s.start_ts),
           jsonb_build_object('intervals', count(*),
                              'starts', jsonb_agg(s.start_ts ORDER BY s.start_ts)),
           to_jsonb(round(sum(s.seconds)::numeric, 3)),
           jsonb_build_array('/api/v1/states?machine=' || s.machine || '&order=none'
                             || coalesce('&shift=' || s.shift_id, ''))
    FROM states s
    WHERE s.order_id IS NULL AND s.bucket NOT IN ('not_scheduled', 'unknown', 'planned_stop')
    GROUP BY s.site, s.area, s.line, s.machine, s.shift_id
    HAVING sum(s.seconds) >= $5
), link_down AS (
    SELECT 'link_down', concat_ws(':', 'link_down', s.site, s.area, s.line, s.machine,
                                  coalesce(s.shift_id, '-')),
           s.site, s.area, s.line, s.machine, s.shift_id, NULL::text,
           round(sum(s.seconds)::numeric, 3), 'seconds', min(s.start_ts),
           jsonb_build_object('outages', count(*),
                              'starts', jsonb_agg(s.start_ts ORDER BY s.start_ts),
                              'reasons', jsonb_agg(DISTINCT s.reason)),
           to_jsonb(count(*)),
           jsonb_build_array('/api/v1/states?machine=' || s.machine || '&bucket=unknown'
                             || coalesce('&shift=' || s.shift_id, ''))
    FROM states s
    WHERE s.bucket = 'unknown' AND s.reason LIKE 'link down%'
    GROUP BY s.site, s.area, s.line, s.machine, s.shift_id
), entries AS (
    SELECT * FROM held UNION ALL SELECT * FROM flagged UNION ALL SELECT * FROM unreasoned
    UNION ALL SELECT * FROM quantity UNION ALL SELECT * FROM mismatch
    UNION ALL SELECT * FROM no_order UNION ALL SELECT * FROM link_down
)
SELECT e.*, sh.name AS shift_name, sh.start_ts AS shift_start
FROM entries e
LEFT JOIN shifts sh ON sh.shift_id = e.shift_id
WHERE ($6::text IS NULL OR e.site = $6) AND ($7::text IS NULL OR e.area = $7)
  AND ($8::text IS NULL OR e.line = $8) AND ($9::text IS NULL OR e.shift_id = $9)
  AND ($10::text IS NULL OR e.machine = $10)
  AND NOT EXISTS (
      SELECT 1 FROM revisions r
      WHERE r.target_kind = 'order' AND r.field = 'status' AND e.order_id IS NOT NULL
        AND r.order_id = e.order_id AND r.site = e.site AND r.area = e.area
        AND r.line = e.line AND r.machine = e.machine
        AND r.revision_id = (SELECT max(r2.revision_id) FROM revisions r2
                             WHERE r2.target_kind = 'order' AND r2.field = 'status'
                               AND r2.target_key = r.target_key)
        AND r.new_value #>> '{}' = 'confirmed')
ORDER BY e.site, e.area, e.line, sh.start_ts NULLS FIRST, e.shift_id NULLS FIRST, e.machine,
         e.kind, e.at, e.key
"""

KINDS = ("held", "flagged", "downtime", "quantity", "mismatch", "no_order", "link_down")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def review_queue(
    conn: asyncpg.Connection,
    cfg: ReviewSection,
    *,
    start: datetime,
    end: datetime,
    site: str | None = None,
    area: str | None = None,
    line: str | None = None,
    shift: str | None = None,
    machine: str | None = None,
) -> list[dict[str, Any]]:
    """Unresolved entries whose records lie in [start, end), per line and shift."""
    rows = await conn.fetch(
        _QUEUE_SQL,
        start,
        end,
        cfg.micro_stop_s,
        cfg.quantity_tolerance_pct,
        cfg.no_order_min_s,
        site,
        area,
        line,
        shift,
        machine,
    )
    keys = {Target(kind="queue_entry", entry=r["key"]).key: r["key"] for r in rows}
    acks = await conn.fetch(
        "SELECT target_key, new_value FROM revision_latest"
        " WHERE target_kind = 'queue_entry' AND target_key = ANY($1::text[])",
        list(keys),
    )
    seen = {keys[a["target_key"]]: json.loads(a["new_value"]) for a in acks}
    out = []
    for r in rows:
        fingerprint = json.loads(r["fingerprint"])
        if r["key"] in seen and seen[r["key"]] == fingerprint:
            continue
        out.append(
            {
                "kind": r["kind"],
                "key": r["key"],
                "site": r["site"],
                "area": r["area"],
                "line": r["line"],
                "machine": r["machine"],
                "shift_id": r["shift_id"],
                "shift_name": r["shift_name"],
                "order_id": r["order_id"],
                "size": float(r["size"]) if r["size"] is not None else None,
                "unit": r["unit"],
                "at": _plain(r["at"]),
                "detail": json.loads(r["detail"]),
                "fingerprint": fingerprint,
                "links": json.loads(r["links"]),
            }
        )
    return out


async def queue_entry(
    conn: asyncpg.Connection, cfg: ReviewSection, key: str, start: datetime, end: datetime
) -> dict[str, Any] | None:
    """The unresolved entry with this key in the window, or None."""
    for entry in await review_queue(conn, cfg, start=start, end=end):
        if entry["key"] == key:
            return entry
    return None
