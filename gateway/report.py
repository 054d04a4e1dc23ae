"""`mesgw report oee`: OEE per order, shift or machine-hour, as the store's SQL computes it.

The figures come from the SQL functions `oee_by_order`, `oee_by_shift` and
`oee_by_machine_hour` (migrations 0005 and 0007), so this report, the review UI and an ad-hoc
query all give the same numbers; this module only selects and prints them. Its defaults are
the SQL's too: micro-stops charged as recorded unless oee_settings overrides it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

from gateway.config import DEFAULT_CONFIG, StoreSection, load_config
from gateway.errors import GatewayError, StoreError
from gateway.logging import configure

Grain = Literal["order", "shift", "hour"]

# The SQL function behind each grain and how its rows are ordered within a machine (time
# outside any order or shift first).
_FUNCTIONS: Final[dict[str, tuple[str, str]]] = {
    "order": ("oee_by_order", "order_id NULLS FIRST"),
    "shift": ("oee_by_shift", "shift_start NULLS FIRST, shift_id"),
    "hour": ("oee_by_machine_hour", "hour"),
}
# Held counts (parts the rules could not vouch for, waiting for a clerk) belong to a row by
# machine and the row's order, shift or hour; they are never part of its figures.
_HELD_SCOPE: Final[dict[str, str]] = {
    "order": "h.order_id IS NOT DISTINCT FROM o.order_id",
    "shift": "h.shift_id IS NOT DISTINCT FROM o.shift_id",
    "hour": "h.ts >= o.hour AND h.ts < o.hour + interval '1 hour'",
}
# Without --from, an hourly report covers the last day rather than all history.
DEFAULT_HOURS = 24


async def fetch_oee(
    store: StoreSection,
    by: Grain,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    machine: str | None = None,
    micro_stops: str | None = None,
) -> list[dict[str, Any]]:
    """The OEE rows for the window [start, end) (open-ended where None), per machine."""
    function, order = _FUNCTIONS[by]
    sql = (
        "SELECT o.*, coalesce(held.parts, 0)::bigint AS held"
        f" FROM {function}(coalesce($1, '-infinity'::timestamptz),"
        " coalesce($2, 'infinity'::timestamptz), $3) o"
        # Held and not yet decided (held_counts_shown, migration 0009): parts a clerk has
        # accepted are in the figures, rejected ones in none.
        " LEFT JOIN LATERAL (SELECT sum(h.claimed) AS parts FROM held_counts_shown h"
        " WHERE (h.site, h.area, h.line, h.machine) = (o.site, o.area, o.line, o.machine)"
        " AND h.decision = 'pending'"
        f" AND {_HELD_SCOPE[by]}"
        " AND h.ts >= coalesce($1, '-infinity'::timestamptz)"
        " AND h.ts < coalesce($2, 'infinity'::timestamptz)) held ON true"
        " WHERE $4::text IS NULL OR o.machine = $4"
        f" ORDER BY o.site, o.area, o.line, o.machine, {order}"
    )
    return await fetch_rows(
        store, sql, (start, end, micro_stops, machine), f"computing OEE by {by}"
    )


async def fetch_rows(
    store: StoreSection, sql: str, args: Sequence[Any], what: str
) -> list[dict[str, Any]]:
    """Run one report query on its own connection; a store that lacks the schema the query
    needs is told to migrate, any other failure says what was being done."""
    import asyncpg

    from gateway.store import connect, describe

    conn = await connect(store)
    try:
        # The planner cannot see how few hours a record spans, so large windows look costly
        # enough for JIT compilation, which took longer than the query it compiled (0.5 s of
        # 1 s for a day of 50 machines).
        await conn.execute("SET jit = off")
        rows = await conn.fetch(sql, *args)
    except (asyncpg.UndefinedFunctionError, asyncpg.UndefinedTableError) as err:
        raise StoreError(f"{describe(store)} lacks {err}: run `mesgw db migrate` first") from err
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
        raise StoreError(f"{what} failed: {err}") from err
    finally:
        await conn.close()
    return [dict(r) for r in rows]


def parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time (e.g. 2025-03-04T06:00Z)"
        ) from err
    # A time without a zone is UTC, as everywhere in the store.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    start: datetime | None = args.start
    end: datetime | None = args.end
    if start is not None and end is not None and end <= start:
        raise GatewayError(f"--to ({iso(end)}) must be after --from ({iso(start)})")
    if args.by == "hour" and start is None:
        latest = end or datetime.now(UTC)
        start = latest.replace(minute=0, second=0, microsecond=0) - timedelta(
            hours=DEFAULT_HOURS - 1
        )
    return start, end


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return iso(value)
    return value


def _duration(seconds: Decimal | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _percent(ratio: Decimal | None) -> str:
    return "-" if ratio is None else f"{float(ratio) * 100:.1f}"


def _label(row: dict[str, Any], by: str) -> str:
    if by == "order":
        return str(row["order_id"]) if row["order_id"] is not None else "(no order)"
    if by == "shift":
        if row["shift_id"] is None:
            return "(no shift)"
        return f"{row['shift_name'] or ''} {row['shift_id']}".strip()
    return iso(row["hour"])


def _micro_stops_note(counted: str) -> str:
    if counted == "recorded":
        return "micro-stops charged as each downtime recorded (rules.micro_stop_loss)"
    return f"micro-stops counted as {counted} loss"


# A performance above 100 % means the machine made parts faster than its ideal cycle time
# allows: the configured ideal cycle time is too long (ISO 22400 caps nothing; we flag it).
OVER_100 = "!"
OVER_100_NOTE = (
    f"{OVER_100} performance above 100 %: the machine ran faster than its ideal cycle time"
    " allows; the ideal cycle time (order or machine ideal_cycle_time_s) is too long"
)


def _empty_outside(row: dict[str, Any], by: str) -> bool:
    """A row for time outside any order or shift with nothing in it: no scheduled time, no
    parts, nothing held. It tells the clerk nothing, so the table leaves it out."""
    outside = (by == "order" and row["order_id"] is None) or (
        by == "shift" and row["shift_id"] is None
    )
    return outside and not row["scheduled_s"] and not row["produced"] and not row["held"]


def _performance(ratio: Decimal | None) -> str:
    text = _percent(ratio)
    return f"{text} {OVER_100}" if ratio is not None and ratio > 1 else text


def render(rows: Sequence[dict[str, Any]], by: str) -> str:
    """A plain-text table: times as h:mm:ss, ratios in percent, '-' where undefined; held
    parts in their own column, never in produced or good; performance above 100 % flagged."""
    header = (
        "machine",
        by,
        "scheduled",
        "planned busy",
        "downtime",
        "micro-stops",
        "run",
        "produced",
        "good",
        "held",
        "A %",
        "P %",
        "Q %",
        "OEE %",
    )
    lines = [header]
    for r in rows:
        lines.append(
            (
                f"{r['site']}/{r['area']}/{r['line']}/{r['machine']}",
                _label(r, by),
                _duration(r["scheduled_s"]),
                _duration(r["planned_busy_s"]),
                _duration(r["downtime_s"]),
                _duration(r["micro_stop_s"]),
                _duration(r["run_s"]),
                str(r["produced"]),
                str(r["good"]),
                str(r["held"]),
                _percent(r["availability"]),
                _performance(r["performance"]),
                _percent(r["quality"]),
                _percent(r["oee"]),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def footnotes(rows: Sequence[dict[str, Any]], omitted: int, by: str) -> list[str]:
    """What the reader of the table must know: flags used, rows left out, parts held."""
    notes = []
    if any(r["performance"] is not None and r["performance"] > 1 for r in rows):
        notes.append(OVER_100_NOTE)
    held = sum(r["held"] for r in rows)
    if held:
        notes.append(
            f"held: {held} parts the rules could not vouch for, in no total until a clerk"
            " accepts them (`mesgw counts held`, `mesgw correct held`)"
        )
    if omitted:
        outside = "order" if by == "order" else "shift"
        notes.append(f"{omitted} empty row(s) outside any {outside} left out (see --json)")
    return notes


def cmd_oee(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    # stdout carries the report: log lines go to stderr.
    configure(settings.logging.level, settings.logging.format, stream="stderr")
    start, end = _window(args)
    rows = asyncio.run(
        fetch_oee(
            settings.store,
            args.by,
            start=start,
            end=end,
            machine=args.machine,
            micro_stops=args.micro_stops,
        )
    )
    if args.json:
        print(json.dumps([{k: jsonable(v) for k, v in r.items()} for r in rows], indent=2))
        return 0
    span = f"{iso(start) if start else 'the beginning'} to {iso(end) if end else 'now'}"
    if not rows:
        print(f"OEE by {args.by}, {span}: no data")
        return 0
    print(f"OEE by {args.by}, {span}; {_micro_stops_note(rows[0]['micro_stops'])}")
    shown = [r for r in rows if not _empty_outside(r, args.by)]
    print(render(shown, args.by))
    for note in footnotes(shown, len(rows) - len(shown), args.by):
        print(note)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `report oee` to the `mesgw` command line."""
    report = sub.add_parser("report", help="production reports from the store")
    reports = report.add_subparsers(dest="report_command", required=True)
    description = (
        "OEE (ISO 22400-2) per work order, shift or machine-hour, computed by the store. "
        "The window [--from, --to) clips every row; times without a zone are UTC."
    )
    oee = reports.add_parser("oee", help="OEE per order, shift or hour", description=description)
    oee.add_argument(
        "--by", choices=("order", "shift", "hour"), required=True, help="one row per machine and"
    )
    oee.add_argument("--machine", help="only this machine id")
    oee.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        type=parse_time,
        help=f"window start (default: all history; by hour: the last {DEFAULT_HOURS} hours)",
    )
    oee.add_argument(
        "--to", dest="end", metavar="TIME", type=parse_time, help="window end (default: now)"
    )
    oee.add_argument(
        "--micro-stops",
        choices=("recorded", "availability", "performance"),
        help="count micro-stops as this loss; recorded: as each downtime's loss says"
        " (default: recorded, unless the store's oee_settings.micro_stops overrides it)",
    )
    oee.add_argument("--json", action="store_true", help="rows as JSON, every input and result")
    oee.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"configuration file (default {DEFAULT_CONFIG})",
    )
    oee.set_defaults(func=cmd_oee)
