"""The review pages: a shift's overview, an order's detail, the live strip.

Every figure comes from the store's shown-figures SQL (raw + revisions, migration 0009):
`oee_by_order` for a shift's machines by orders, `order_operations_shown`,
`order_shifts_shown`, `downtimes_shown`, `held_counts_shown`; the page adds no arithmetic of
its own beyond formatting. Times are shown in the plant's time zone (`web.timezone`).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

import aiohttp_jinja2
from aiohttp import web

from gateway.config import ReviewSection
from gateway.review.actions import acknowledge
from gateway.review.errors import Conflict, Forbidden, Invalid, ReviewError
from gateway.review.export import Format, Selection, export_confirmations
from gateway.review.queue import queue_entry, review_queue
from gateway.review.users import Actor
from gateway.web.auth import AUTH, FORM_ERRORS, FORM_STATUS, FORM_VALUES, USER, User
from gateway.web.timeline import COLOURS, LABELS, fetch_segments, render_svg

LIVE_POLL_S = 2.0
REVIEW: Final = web.AppKey("web_review_settings", ReviewSection)
LIVE_STREAMS: Final = web.AppKey("web_live_streams", set[asyncio.Task[Any]])
REASONS: Final = web.AppKey("web_reasons", list)


def context(request: web.Request, nav: str, **values: Any) -> dict[str, Any]:
    auth = request.app[AUTH]
    user: User = request[USER]
    messages = []
    if "done" in request.query:
        messages.append({"kind": "ok", "text": request.query["done"]})
    return {
        "user": user,
        "nav": nav,
        "tz": auth.settings.timezone or "UTC",
        "zone": auth.settings.zone,
        "messages": messages,
        "request_qs": request.query_string,
        "colours": COLOURS,
        "labels": LABELS,
        **values,
    }


def _day(request: web.Request) -> date:
    zone = request.app[AUTH].settings.zone
    text = request.query.get("day")
    if text:
        try:
            return date.fromisoformat(text)
        except ValueError as err:
            raise web.HTTPBadRequest(text=f"day {text!r} is not a date (YYYY-MM-DD)") from err
    return datetime.now(zone).date()


def day_window(day: date, zone: Any) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


async def overview(request: web.Request) -> web.Response:
    """One day or one shift per line: machines by orders with good, scrap, run and down time,
    OEE, and each machine's review-queue count; a state bar per machine."""
    auth = request.app[AUTH]
    zone = auth.settings.zone
    day = _day(request)
    day_start, day_end = day_window(day, zone)
    pool = auth.pool
    shifts = await pool.fetch(
        "SELECT shift_id, name, start_ts, end_ts FROM shifts"
        " WHERE start_ts < $2 AND end_ts > $1 ORDER BY start_ts",
        day_start,
        day_end,
    )
    chosen = next((s for s in shifts if s["shift_id"] == request.query.get("shift")), None)
    start, end = (chosen["start_ts"], chosen["end_ts"]) if chosen else (day_start, day_end)
    rows = await pool.fetch(
        "SELECT * FROM oee_by_order($1, $2) ORDER BY site, area, line, machine,"
        " order_id NULLS FIRST",
        start,
        end,
    )
    held = {
        (h["site"], h["area"], h["line"], h["machine"], h["order_id"]): h["parts"]
        for h in await pool.fetch(
            "SELECT site, area, line, machine, order_id, sum(claimed)::bigint AS parts"
            " FROM held_counts_shown WHERE decision = 'pending' AND ts >= $1 AND ts < $2"
            " GROUP BY 1, 2, 3, 4, 5",
            start,
            end,
        )
    }
    queue = await queue_counts(request.app, start, end)
    lines: dict[tuple[str, str, str], dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for record in rows:
        r = dict(record)
        r["held"] = held.get((r["site"], r["area"], r["line"], r["machine"], r["order_id"]), 0)
        if r["order_id"] is None and not r["scheduled_s"] and not r["produced"] and not r["held"]:
            continue  # time outside any order with nothing in it
        lines[(r["site"], r["area"], r["line"])][r["machine"]].append(r)
    now = datetime.now(UTC)
    bars = {}
    for (site, area, line), machines in lines.items():
        for machine in machines:
            segments = await fetch_segments(pool, (site, area, line, machine), start, end, now)
            bars[(site, area, line, machine)] = render_svg(
                segments, start, end, zone, label=f"states of {machine}"
            )
    return aiohttp_jinja2.render_template(
        "overview.html",
        request,
        context(
            request,
            "overview",
            day=day,
            shifts=shifts,
            chosen=chosen,
            start=start,
            end=end,
            lines=lines,
            queue=queue,
            bars=bars,
            prev_day=day - timedelta(days=1),
            next_day=day + timedelta(days=1),
        ),
    )


async def queue_entries(
    app: web.Application, start: datetime, end: datetime, **where: str | None
) -> list[dict[str, Any]]:
    async with app[AUTH].pool.acquire() as conn:
        return await review_queue(conn, app[REVIEW], start=start, end=end, **where)


async def queue_counts(
    app: web.Application, start: datetime, end: datetime
) -> dict[tuple[str, str, str, str], int]:
    """Open review-queue entries per machine in [start, end)."""
    counts: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for entry in await queue_entries(app, start, end):
        counts[(entry["site"], entry["area"], entry["line"], entry["machine"])] += 1
    return counts


KIND_LABELS: Final[dict[str, str]] = {
    "held": "Held count",
    "flagged": "Flagged records",
    "downtime": "Downtime without reason",
    "quantity": "Off the planned quantity",
    "mismatch": "Total ≠ good + reject",
    "no_order": "Time with no order",
    "link_down": "Link down",
}
# Entries resolved by a correction on the order page; the rest can also be acknowledged.
CORRECTED_ONLY: Final = frozenset({"held", "downtime"})


def queue_window(request: web.Request) -> tuple[datetime, datetime]:
    """The queue's window: the chosen day, or the last `review.queue_days` days."""
    if "day" in request.query:
        return day_window(_day(request), request.app[AUTH].settings.zone)
    end = datetime.now(UTC)
    return end - timedelta(days=request.app[REVIEW].queue_days), end + timedelta(minutes=1)


async def queue_page(request: web.Request) -> web.Response:
    """What needs a human first, per line and shift, each entry linked to its records."""
    start, end = queue_window(request)
    where = {k: request.query.get(k) or None for k in ("line", "shift", "machine")}
    entries = await queue_entries(request.app, start, end, **where)
    entries.sort(key=lambda e: (e["line"], e["shift_id"] or "", e["machine"], e["kind"]))
    return aiohttp_jinja2.render_template(
        "queue.html",
        request,
        context(
            request,
            "queue",
            entries=entries,
            start=start,
            end=end,
            where=where,
            kinds=KIND_LABELS,
            corrected_only=CORRECTED_ONLY,
            errors=request.get(FORM_ERRORS, {}),
        ),
        status=request.get(FORM_STATUS, 200),
    )


async def queue_acknowledge(request: web.Request) -> web.StreamResponse:
    """Resolve an entry without a correction; refused when it changed since it was shown."""
    user: User = request[USER]
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    key = form.get("key", "")
    start, end = queue_window(request)
    try:
        async with request.app[AUTH].pool.acquire() as conn:
            entry = await queue_entry(conn, request.app[REVIEW], key, start, end)
            if entry is None:
                raise Invalid(f"the entry {key!r} is resolved already or outside the window")
            if json.dumps(entry["fingerprint"], sort_keys=True) != form.get("fingerprint"):
                raise Conflict("the entry changed since the page was shown: look again")
            actor = Actor(user=user.name, role=user.role, source="web")
            await acknowledge(
                conn, actor, entry=key, fingerprint=entry["fingerprint"], reason=form.get("reason")
            )
    except Forbidden as err:
        raise web.HTTPForbidden(text=str(err)) from err
    except ReviewError as err:
        request[FORM_ERRORS] = {key: str(err)}
        request[FORM_STATUS] = err.status
        return await queue_page(request)
    raise web.HTTPSeeOther(f"{request.path_qs.replace('/acknowledge', '')}")


async def order_detail(request: web.Request) -> web.Response:
    """An order: its figures per machine and shift, count intervals, a state bar per machine,
    its downtimes with reasons, held counts, revision history, and the clerk's forms."""
    auth = request.app[AUTH]
    pool = auth.pool
    order_id = request.match_info["order_id"]
    operations = await pool.fetch(
        "SELECT * FROM order_operations_shown(p_order => $1) ORDER BY site, area, line, machine",
        order_id,
    )
    if not operations:
        raise web.HTTPNotFound(text=f"no work order {order_id!r}")
    shifts = await pool.fetch(
        "SELECT o.*, s.name AS shift_name, s.start_ts AS shift_start"
        " FROM order_shifts_shown($1) o LEFT JOIN shifts s USING (shift_id)"
        " ORDER BY o.machine, s.start_ts NULLS FIRST",
        order_id,
    )
    counts = await pool.fetch(
        "SELECT machine, interval_start, interval_end, good, reject, total, quality"
        " FROM counts WHERE order_id = $1 ORDER BY machine, interval_start LIMIT 500",
        order_id,
    )
    downtimes = await pool.fetch(
        "SELECT * FROM downtimes_shown WHERE order_id = $1 ORDER BY machine, start_ts",
        order_id,
    )
    held = await pool.fetch(
        "SELECT * FROM held_counts_shown WHERE order_id = $1 ORDER BY ts", order_id
    )
    history = await pool.fetch(
        "SELECT r.* FROM revisions r"
        " WHERE r.order_id = $1"
        "    OR r.held_id IN (SELECT held_id FROM held_counts WHERE order_id = $1)"
        "    OR r.downtime_id IN (SELECT downtime_id FROM downtimes_shown WHERE order_id = $1)"
        " ORDER BY r.revision_id DESC",
        order_id,
    )
    now = datetime.now(UTC)
    bars = []
    for op in operations:
        start = op["started_at"] or now
        end = op["ended_at"] or now
        if end <= start:
            continue
        machine = (op["site"], op["area"], op["line"], op["machine"])
        segments = await fetch_segments(pool, machine, start, end, now)
        bars.append(
            (
                op,
                render_svg(segments, start, end, auth.settings.zone, label=f"{op['machine']}"),
                segments,
            )
        )
    return aiohttp_jinja2.render_template(
        "order.html",
        request,
        context(
            request,
            "overview",
            order_id=order_id,
            operations=operations,
            shifts=shifts,
            counts=counts,
            downtimes=downtimes,
            held=held,
            history=history,
            bars=bars,
            reasons=request.app[REASONS],
            errors=request.get(FORM_ERRORS, {}),
            form=request.get(FORM_VALUES, {}),
        ),
        status=request.get(FORM_STATUS, 200),
    )


async def live_snapshot(pool: Any) -> dict[str, Any]:
    down = await pool.fetch(
        "SELECT machine, start_ts, reason_text, reason_code FROM downtimes_shown"
        " WHERE end_ts IS NULL ORDER BY start_ts"
    )
    held = await pool.fetchrow(
        "SELECT count(*) AS n, coalesce(sum(claimed), 0)::bigint AS parts"
        " FROM held_counts_shown WHERE decision = 'pending'"
    )
    return {
        "downtimes": [
            {
                "machine": d["machine"],
                "start": d["start_ts"].isoformat(),
                "reason": d["reason_text"] or d["reason_code"],
            }
            for d in down
        ],
        "held": held["n"],
        "held_parts": held["parts"],
    }


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a snapshot of active downtimes and pending held counts, sent at
    once and again whenever it changes (checked every LIVE_POLL_S)."""
    auth = request.app[AUTH]
    zone = auth.settings.zone
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must not hold the stream back
        }
    )
    await response.prepare(request)
    last = None
    version = 0
    task = asyncio.current_task()
    streams = request.app[LIVE_STREAMS]
    if task is not None:
        streams.add(task)
    try:
        while True:
            snapshot = await live_snapshot(auth.pool)
            for d in snapshot["downtimes"]:
                d["since"] = datetime.fromisoformat(d["start"]).astimezone(zone).strftime("%H:%M")
            if snapshot != last:
                version += 1
                last = snapshot
                payload = json.dumps({**snapshot, "version": version})
                await response.write(f"event: snapshot\ndata: {payload}\n\n".encode())
            await asyncio.sleep(LIVE_POLL_S)
    except ConnectionResetError:  # the browser left; a shutdown's cancellation goes on up
        pass
    finally:
        streams.discard(task)
    return response


async def end_live_streams(app: web.Application) -> None:
    """On shutdown: end the open streams, which never end on their own (browsers reconnect
    to the restarted service by themselves)."""
    streams = app[LIVE_STREAMS]
    for task in list(streams):
        task.cancel()


def _selection(values: Any, zone: Any) -> Selection:
    """An export selection from a query or form: an order, or a day range in plant time."""
    order = (values.get("order") or "").strip() or None
    start = end = None
    if values.get("from"):
        start = day_window(_parse_day(values["from"]), zone)[0]
    if values.get("to"):
        end = day_window(_parse_day(values["to"]), zone)[1]
    return Selection(order=order, start=start, end=end)


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise web.HTTPBadRequest(text=f"{text!r} is not a date (YYYY-MM-DD)") from err


async def export_page(request: web.Request) -> web.Response:
    """The export as the ERP would get it now, without recording (SAP's test run): every
    line, the new ones (what changed since the last export) marked, and the problems."""
    user: User = request[USER]
    auth = request.app[AUTH]
    sel = _selection(request.query, auth.settings.zone)
    preview = None
    error = None
    if sel.order or sel.start or sel.end:
        actor = Actor(user=user.name, role=user.role, source="web")
        try:
            async with auth.pool.acquire() as conn:
                preview = await export_confirmations(
                    conn,
                    actor,
                    sel,
                    fmt="json",
                    cfg=request.app[REVIEW].export,
                    timezone=auth.settings.timezone or "UTC",
                    check=True,
                )
        except ReviewError as err:
            error = str(err)
    runs = await auth.pool.fetch(
        "SELECT run_id, created_at, user_name, source, selection, format, lines"
        " FROM export_runs ORDER BY run_id DESC LIMIT 10"
    )
    rows = [(x, any(x is n for n in preview.new)) for x in preview.lines] if preview else []
    return aiohttp_jinja2.render_template(
        "export.html",
        request,
        context(
            request,
            "export",
            sel=sel,
            query=request.query,
            preview=preview,
            rows=rows,
            error=error,
            runs=runs,
        ),
        status=422 if error else 200,
    )


async def export_download(request: web.Request) -> web.StreamResponse:
    """Hand the export over: record its new lines in the ledger (a clerk) and download it;
    with `check`, only download what it would be (anyone)."""
    user: User = request[USER]
    auth = request.app[AUTH]
    form = await request.post()
    sel = _selection(form, auth.settings.zone)
    fmt: Format = "json" if form.get("format") == "json" else "csv"
    check = form.get("check") == "1"
    actor = Actor(user=user.name, role=user.role, source="web")
    try:
        async with auth.pool.acquire() as conn:
            result = await export_confirmations(
                conn,
                actor,
                sel,
                fmt=fmt,
                cfg=request.app[REVIEW].export,
                timezone=auth.settings.timezone or "UTC",
                check=check,
            )
    except Forbidden as err:
        raise web.HTTPForbidden(text=str(err)) from err
    except ReviewError as err:
        raise web.HTTPUnprocessableEntity(text=str(err)) from err
    name = f"confirmations-{sel.order or 'range'}{'-check' if check else ''}.{fmt}"
    return web.Response(
        body=result.content,
        content_type="text/csv" if fmt == "csv" else "application/json",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
