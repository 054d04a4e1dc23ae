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

import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
# PGlite (TimescaleDB in WASM, in memory, one connection) is the only TimescaleDB on this box;
# it holds a fortnight, not a year.
TS_DAYS = int(os.environ.get("MESGW_BENCH_REVIEW_TS_DAYS", "14"))
TS_RECORD_S = int(os.environ.get("MESGW_BENCH_REVIEW_TS_RECORD_S", "300"))
PGLITE_DIR = Path(__file__).resolve().parent.parent / "tools" / "pglite"

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


async def _timed(call: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, Any]:
    result = await call()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


async def _generate(conn: asyncpg.Connection, days: int, record_s: int, label: str) -> None:
    end = T0 + timedelta(days=days)
    await conn.execute("SET TimeZone = 'UTC'")
    started = time.perf_counter()
    for sql in _GENERATE:
        await conn.execute(
            sql.replace("{t0}", T0.isoformat())
            .replace("{end}", end.isoformat())
            .replace("{rec}", str(record_s))
        )
    # What autovacuum does to a year of rows: statistics, and the visibility map that lets
    # an operation's parts come from an index-only scan.
    await conn.execute("VACUUM ANALYZE")
    generated = time.perf_counter() - started
    records = await conn.fetchval("SELECT count(*) FROM counts")
    full = MACHINES * 365 * 86400 // 10
    print(
        f"bench_review ({label}): {records:,} count records ({MACHINES} machines, {days} days,"
        f" one per {record_s} s; a year at the rules' 10 s would be {full:,}), generated in"
        f" {generated:.0f} s",
        flush=True,
    )


async def _measure(
    conn: asyncpg.Connection, days: int, label: str, runs: int
) -> list[dict[str, object]]:
    end = T0 + timedelta(days=days)
    await conn.execute("SET jit = off")
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
        return [
            await conn.fetch("SELECT * FROM order_operations_shown(p_order => $1)", last_order),
            await conn.fetch("SELECT * FROM order_shifts_shown($1)", last_order),
            await conn.fetch("SELECT * FROM held_counts_shown WHERE order_id = $1", last_order),
            await conn.fetch("SELECT * FROM downtimes_shown WHERE order_id = $1", last_order),
            await conn.fetch("SELECT * FROM revisions WHERE order_id = $1", last_order),
        ]

    async def queue_line_shift() -> Any:
        shift = await conn.fetchrow(
            "SELECT shift_id, start_ts, end_ts FROM shifts WHERE end_ts <= $1"
            " AND name = 'early' ORDER BY start_ts DESC LIMIT 1",
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
    for name, call, target in (
        ("order list, last 7 days (API /orders)", order_list, "< 200"),
        ("one order's detail (API /orders/{id})", detail, "< 200"),
        ("queue, one line and shift (the last early)", queue_line_shift, "< 500"),
        ("queue, all 10 lines, one day", queue_day, "< 500"),
        ("queue, all lines, 7 days (the default)", queue_week, "< 500"),
        ("export of a month, check mode (CSV)", export_month, "< 2000"),
    ):
        ms, result = await _timed(call, runs)
        size = len(result.lines) if hasattr(result, "lines") else len(result)
        print(f"  {label}: {name}: {size:,} rows or lines", flush=True)
        rows.append(
            {"bench": f"review ({label}): {name}", "value": ms, "unit": "ms", "target": target}
        )
    return rows


def _start_pglite() -> tuple[subprocess.Popen[bytes], str]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("bench_review needs Node.js for the TimescaleDB harness (make pglite)")
    log_path = Path(tempfile.mkdtemp(prefix="mesgw-bench-pglite-")) / "pglite.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [node, "server.mjs", "--host", "127.0.0.1", "--port", "0"],
            cwd=PGLITE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return proc, line.split()[1]
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=10)
    raise RuntimeError(f"the PGlite harness did not start: {log_path.read_text()}")


async def _timescaledb() -> list[dict[str, object]]:
    proc, dsn = await asyncio.to_thread(_start_pglite)
    try:
        await migrate(StoreSection(dsn=SecretStr(dsn), timescaledb="on"))
        conn = await asyncpg.connect(dsn)
        try:
            label = f"TimescaleDB in PGlite/WASM, {TS_DAYS} days"
            await _generate(conn, TS_DAYS, TS_RECORD_S, label)
            return await _measure(conn, TS_DAYS, label, max(1, RUNS // 2))
        finally:
            await conn.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def run() -> list[dict[str, object]]:
    async with temporary_database(ADMIN_DSN, prefix="mesgw_bench_review") as dsn:
        await migrate(StoreSection(dsn=SecretStr(dsn), timescaledb="off"))
        conn = await asyncpg.connect(dsn)
        try:
            label = f"PostgreSQL, {DAYS} days"
            await _generate(conn, DAYS, RECORD_S, label)
            rows = await _measure(conn, DAYS, label, RUNS)
        finally:
            await conn.close()
    if TS_DAYS > 0:
        rows += await _timescaledb()
    return rows


if __name__ == "__main__":
    print(render(asyncio.run(run())))
