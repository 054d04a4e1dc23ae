"""The clerk's reads on a synthetic year of 50 machines: order list, review queue, one order's
detail, a month's export (check mode), each as the API runs it, on the local PostgreSQL.

The plant: 10 lines of 5 machines, three 8-hour shifts a day, one order per line and shift
(running on its 5 machines), a count record every `MESGW_BENCH_REVIEW_RECORD_S` seconds
(default 300: 5.3 million records a year, generated in a few minutes here; 60 gives 26 million,
the rules' default of 10 s would be 158 million), two
downtimes a shift (one a micro-stop, one in ten without a reason), a link outage a week, a
held count a day and a flagged record in 500 per machine, and a few thousand revisions. The
rows are generated in SQL straight into the typed tables (the recorder's throughput is
`bench_store`'s business), then ANALYZEd. Figures are the median of 5 runs after a warm-up.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pydantic import SecretStr

from bench.table import render
from gateway.config import ReviewExportSection, ReviewSection, StoreSection
from gateway.review.export import Selection, export_confirmations
from gateway.review.queue import review_queue
from gateway.review.users import Actor
from gateway.store import migrate
from gateway.testing import temporary_database

ADMIN_DSN = os.environ.get("MESGW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RECORD_S = int(os.environ.get("MESGW_BENCH_REVIEW_RECORD_S", "300"))
DAYS = int(os.environ.get("MESGW_BENCH_REVIEW_DAYS", "365"))
MACHINES = 50
T0 = datetime(2025, 1, 1, tzinfo=UTC)
RUNS = 5

# {t0}, {end}: the year; {rec}: seconds per count record. Shifts start at T0 - 2 h + k x 8 h.
_SHIFT_START = (
    "(timestamptz '{t0}' - interval '2h' + floor(extract(epoch FROM {t} - (timestamptz '{t0}'"
    " - interval '2h')) / 28800) * interval '8h')"
)
_SHIFT_NAME = (
    "CASE extract(hour FROM {ss}) WHEN 6 THEN 'early' WHEN 14 THEN 'late' ELSE 'night' END"
)
_GENERATE = [
    """
    INSERT INTO shifts (shift_id, calendar, name, start_ts, end_ts)
    SELECT 'cal-' || to_char(s, 'YYYYMMDD') || '-' || (%(name)s), 'cal', %(name)s, s,
           s + interval '8h'
    FROM generate_series(timestamptz '{t0}' - interval '2h', timestamptz '{end}' - interval '8h',
                         interval '8h') s
    """.replace("%(name)s", _SHIFT_NAME.format(ss="s")),
    # one order per line and shift on each of its 5 machines
    """
    INSERT INTO work_orders (order_id, site, area, line, machine, product, quantity,
                             ideal_cycle_time_s, status, origin, started_at, ended_at)
    SELECT 'wo-' || l || '-' || to_char(sh.start_ts, 'YYYYMMDDHH24'), 'plant', 'hall',
           'line' || l, 'm' || lpad(((l - 1) * 5 + k)::text, 2, '0'), 'part-' || l,
           4200, 6.0,
           CASE WHEN sh.end_ts >= timestamptz '{end}' THEN 'running' ELSE 'completed' END,
           'schedule', sh.start_ts,
           CASE WHEN sh.end_ts >= timestamptz '{end}' THEN NULL ELSE sh.end_ts END
    FROM shifts sh, generate_series(1, 10) l, generate_series(1, 5) k
    """,
    # count records, a flagged one in 512
    """
    INSERT INTO counts (event_id, site, area, line, machine, order_id, shift_id,
                        interval_start, interval_end, good, reject, total, quality,
                        ideal_cycle_time_s)
    SELECT gen_random_uuid(), 'plant', 'hall', 'line' || ((m - 1) / 5 + 1),
           'm' || lpad(m::text, 2, '0'),
           'wo-' || ((m - 1) / 5 + 1) || '-' || to_char(ss, 'YYYYMMDDHH24'),
           'cal-' || to_char(ss, 'YYYYMMDD') || '-' || (%(name)s),
           t, t + interval '{rec} s', g, r, g + r,
           CASE WHEN (hashint8(extract(epoch FROM t)::bigint * 64 + m) & 511) = 0 THEN 'gap'
                ELSE 'ok' END,
           6.0
    FROM generate_series(1, 50) m
    CROSS JOIN generate_series(timestamptz '{t0}', timestamptz '{end}' - interval '{rec} s',
                               interval '{rec} s') t
    CROSS JOIN LATERAL (SELECT %(start)s AS ss) s
    CROSS JOIN LATERAL (
        SELECT ({rec} / 6.0 * 0.9)::int - (hashint8(extract(epoch FROM t)::bigint + m) & 3)::int
                   AS g,
               (hashint8(extract(epoch FROM t)::bigint - m) & 1)::int AS r) x
    """.replace("%(name)s", _SHIFT_NAME.format(ss="ss")).replace(
        "%(start)s", _SHIFT_START.replace("{t}", "t")
    ),
    # state intervals: run 2 h, down 10 min, run, 90 s stop at 5 h (Wednesday lates: a link
    # outage instead), run to the end of the shift
    """
    INSERT INTO state_intervals (site, area, line, machine, start_ts, end_ts, bucket, reason,
                                 order_id, shift_id)
    SELECT 'plant', 'hall', 'line' || ((m - 1) / 5 + 1), 'm' || lpad(m::text, 2, '0'),
           sh.start_ts + p.a, sh.start_ts + p.b,
           CASE WHEN outage THEN 'unknown' ELSE p.kind END,
           CASE WHEN outage THEN 'link down: no answer' END,
           'wo-' || ((m - 1) / 5 + 1) || '-' || to_char(sh.start_ts, 'YYYYMMDDHH24'), sh.shift_id
    FROM generate_series(1, 50) m
    CROSS JOIN shifts sh
    CROSS JOIN (VALUES ('running', interval '0', interval '2h'),
                       ('down', interval '2h', interval '2h10m'),
                       ('running', interval '2h10m', interval '5h'),
                       ('down', interval '5h', interval '5h1m30s'),
                       ('running', interval '5h1m30s', interval '8h')) p(kind, a, b)
    CROSS JOIN LATERAL (SELECT p.a = interval '5h' AND sh.name = 'late'
                               AND extract(dow FROM sh.start_ts) = 3 AS outage) o
    WHERE sh.start_ts >= timestamptz '{t0}'
    """,
    """
    INSERT INTO downtimes (downtime_id, site, area, line, machine, start_ts, end_ts, duration_s,
                           reason_code, reason_text, category, order_id, shift_id, micro_stop,
                           loss)
    SELECT s.machine || '-' || to_char(s.start_ts, 'YYYYMMDD"T"HH24MISS"000Z"'),
           s.site, s.area, s.line, s.machine, s.start_ts, s.end_ts,
           extract(epoch FROM s.end_ts - s.start_ts),
           CASE WHEN (hashint8(extract(epoch FROM s.start_ts)::bigint + 7) % 10) = 0 THEN NULL
                ELSE '17' END,
           NULL, 'unplanned', s.order_id, s.shift_id,
           s.end_ts - s.start_ts < interval '2min', 'availability'
    FROM state_intervals s WHERE s.bucket = 'down'
    """,
    # a held count a day per machine, at 09:00
    """
    INSERT INTO held_counts (held_id, event_id, site, area, line, machine, order_id, shift_id,
                             counter, role, old_raw, new_raw, claimed, plausible_max, reason,
                             seen_from, ts)
    SELECT c.machine || '-good-' || extract(epoch FROM c.interval_start)::bigint,
           gen_random_uuid(), c.site, c.area, c.line, c.machine, c.order_id, c.shift_id, 'good',
           'good_count', 1000, 61000, 60000, 15, 'spike', c.interval_start, c.interval_end
    FROM counts c
    WHERE c.interval_start IN (SELECT d + interval '9h' FROM generate_series(
        timestamptz '{t0}', timestamptz '{end}' - interval '1 day', interval '1 day') d)
    """,
    "INSERT INTO users (name, role) VALUES ('bench', 'clerk')",
    # the clerk's past year: one order in eight corrected on its first machine, every held
    # count older than a week decided
    """
    INSERT INTO revisions (change_id, user_name, source, action, target_kind, target_key,
                           target_rev, site, area, line, machine, order_id, field, old_value,
                           new_value, reason)
    SELECT gen_random_uuid(), 'bench', 'cli', 'adjust', 'order',
           jsonb_build_array(w.order_id, w.site, w.area, w.line, w.machine)::text, 1,
           w.site, w.area, w.line, w.machine, w.order_id, 'scrap', '0', '3', 'bench'
    FROM work_orders w WHERE w.machine = 'm01' AND (hashtext(w.order_id) & 7) = 0
    """,
    """
    INSERT INTO revisions (change_id, user_name, source, action, target_kind, target_key,
                           target_rev, held_id, field, new_value, reason)
    SELECT gen_random_uuid(), 'bench', 'cli', 'reject', 'held_count',
           jsonb_build_array(h.held_id)::text, 1, h.held_id, 'accepted', '0', 'bench'
    FROM held_counts h WHERE h.ts < timestamptz '{end}' - interval '7 days'
    """,
]


async def _timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    result = await call()  # warm-up
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        result = await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


async def run() -> list[dict[str, object]]:
    end = T0 + timedelta(days=DAYS)
    async with temporary_database(ADMIN_DSN, prefix="mesgw_bench_review") as dsn:
        await migrate(StoreSection(dsn=SecretStr(dsn), timescaledb="off"))
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET jit = off")
            await conn.execute("SET TimeZone = 'UTC'")
            started = time.perf_counter()
            for sql in _GENERATE:
                await conn.execute(
                    sql.replace("{t0}", T0.isoformat())
                    .replace("{end}", end.isoformat())
                    .replace("{rec}", str(RECORD_S))
                )
            await conn.execute("ANALYZE")
            generated = time.perf_counter() - started
            records = await conn.fetchval("SELECT count(*) FROM counts")
            full = MACHINES * DAYS * 86400 // 10
            print(
                f"bench_review: {records:,} count records ({MACHINES} machines, {DAYS} days, one"
                f" per {RECORD_S} s; at the rules' 10 s it would be {full:,}), generated in"
                f" {generated:.0f} s",
                flush=True,
            )
            cfg = ReviewSection()
            actor = Actor("bench", "clerk", "api")
            week = (end - timedelta(days=7), end)
            last_order = await conn.fetchval(
                "SELECT order_id FROM work_orders WHERE status = 'completed'"
                " ORDER BY ended_at DESC, order_id LIMIT 1"
            )

            async def order_list() -> Any:
                return await conn.fetch(
                    "SELECT * FROM order_operations_shown($1, $2)"
                    " ORDER BY started_at, order_id, site, area, line, machine",
                    *week,
                )

            async def detail() -> Any:
                out = [
                    await conn.fetch(
                        "SELECT * FROM order_operations_shown(p_order => $1)", last_order
                    ),
                    await conn.fetch("SELECT * FROM order_shifts_shown($1)", last_order),
                    await conn.fetch(
                        "SELECT * FROM held_counts_shown WHERE order_id = $1", last_order
                    ),
                    await conn.fetch(
                        "SELECT * FROM downtimes_shown WHERE order_id = $1", last_order
                    ),
                    await conn.fetch("SELECT * FROM revisions WHERE order_id = $1", last_order),
                ]
                return out

            async def queue_line_shift() -> Any:
                shift = await conn.fetchrow(
                    "SELECT shift_id, start_ts, end_ts FROM shifts WHERE end_ts <= $1"
                    " ORDER BY start_ts DESC LIMIT 1",
                    end,
                )
                return await review_queue(
                    conn, cfg, start=shift["start_ts"], end=shift["end_ts"], line="line3"
                )

            async def queue_day() -> Any:
                return await review_queue(conn, cfg, start=end - timedelta(days=1), end=end)

            async def queue_week() -> Any:
                return await review_queue(conn, cfg, start=week[0], end=week[1])

            month = Selection(start=end - timedelta(days=31), end=end - timedelta(days=1))

            async def export_month() -> Any:
                return await export_confirmations(
                    conn, actor, month, fmt="csv", cfg=ReviewExportSection(), check=True
                )

            rows: list[dict[str, object]] = []
            for name, call, target, size in (
                ("review: order list, last 7 days (API /orders)", order_list, "< 200", len),
                ("review: one order's detail (API /orders/{id})", detail, "< 200", None),
                ("review: queue, one line and shift", queue_line_shift, "< 500", len),
                ("review: queue, all 10 lines, one day", queue_day, "< 500", len),
                ("review: queue, all lines, 7 days (the default)", queue_week, "< 500", len),
                ("review: export of a month, check mode (CSV)", export_month, "< 2000", None),
            ):
                ms, result = await _timed(call)
                if size is not None:
                    print(f"  {name}: {len(result):,} rows", flush=True)
                elif hasattr(result, "lines"):
                    print(f"  {name}: {len(result.lines):,} lines", flush=True)
                rows.append({"bench": name, "value": ms, "unit": "ms", "target": target})
            return rows
        finally:
            await conn.close()


if __name__ == "__main__":
    import asyncio

    print(render(asyncio.run(run())))
