"""ERP confirmations per order and operation (machine), after SAP PP's shape, with a ledger.

A confirmation line carries yield, scrap, rework, unit, variance reason, execution start and
finish, setup / run / down seconds, the final-confirmation flag (the order is confirmed),
posting date and the confirmation counter. Figures are the shown ones (raw + revisions); times
come from `oee_times` (setup = changeover, down = the other downtime, run = APT), the
time columns of every OEE report.

The ledger (`export_runs`, `export_lines`) keeps every line handed over, exactly as exported.
An export prints the ledger's lines of the selected operations and, after them, a new line
for each operation whose figures differ from what the ledger has posted: the whole
confirmation the first time, then only the delta (`record_type` "delta"). Exporting again
with nothing changed prints the same bytes and records nothing; `check` validates and prints
without recording, like SAP's test run. Operations with a problem (held counts waiting, still
running) get no new line and are listed instead.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import asyncpg

from gateway.config import ReviewExportSection
from gateway.review.errors import Invalid, NotFound
from gateway.review.users import Actor

Format = Literal["csv", "json"]
SCHEMA: Final = "mesgw.confirmations/1"

COLUMNS: Final[tuple[str, ...]] = (
    "record_type",
    "order",
    "operation",
    "machine",
    "work_centre",
    "yield",
    "scrap",
    "rework",
    "unit",
    "variance_reason",
    "execution_start",
    "execution_finish",
    "setup_s",
    "run_s",
    "down_s",
    "final",
    "posting_date",
    "counter",
)
_FIGURES: Final = ("yield", "scrap", "rework", "setup_s", "run_s", "down_s")


@dataclass(frozen=True, slots=True)
class Selection:
    order: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
        }


@dataclass(slots=True)
class Export:
    content: bytes
    lines: list[dict[str, Any]]
    new: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    run_id: int | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seconds(value: Decimal | float | int | None) -> float:
    return round(float(value or 0), 3)


async def _operations(conn: asyncpg.Connection, sel: Selection) -> list[asyncpg.Record]:
    if sel.order is not None:
        rows = await conn.fetch(
            "SELECT * FROM order_operations_shown(p_order => $1)"
            " ORDER BY order_id, site, area, line, machine",
            sel.order,
        )
        if not rows:
            raise NotFound(f"no order {sel.order!r}")
        return list(rows)
    if sel.start is None or sel.end is None:
        raise Invalid("select an order, or a window with both from and to")
    if sel.end <= sel.start:
        raise Invalid("the window's end must be after its start")
    rows = await conn.fetch(
        "SELECT * FROM order_operations_shown($1, $2)"
        " WHERE ended_at >= $1 AND ended_at < $2 AND status IN ('completed', 'confirmed')"
        " ORDER BY order_id, site, area, line, machine",
        sel.start,
        sel.end,
    )
    return list(rows)


async def _times(
    conn: asyncpg.Connection, ops: list[asyncpg.Record]
) -> dict[tuple[str, ...], asyncpg.Record]:
    ended = [r for r in ops if r["started_at"] is not None and r["ended_at"] is not None]
    if not ended:
        return {}
    lo = min(r["started_at"] for r in ended)
    hi = max(r["ended_at"] for r in ended)
    await conn.execute("SET LOCAL jit = off")
    rows = await conn.fetch(
        "SELECT site, area, line, machine, order_id, changeover_s, downtime_s, run_s"
        " FROM oee_times('order', $1, $2, NULL) WHERE order_id = ANY($3::text[])",
        lo,
        hi,
        sorted({r["order_id"] for r in ended}),
    )
    return {(r["order_id"], r["site"], r["area"], r["line"], r["machine"]): r for r in rows}


async def _variance_reasons(
    conn: asyncpg.Connection, orders: list[str]
) -> dict[tuple[str, ...], str]:
    # The newest reason a clerk gave for this operation's figures: a correction of good or
    # scrap (of the order or within a shift), or the acknowledgement of its quantity entry.
    rows = await conn.fetch(
        "SELECT DISTINCT ON (order_id, site, area, line, machine)"
        " order_id, site, area, line, machine, reason FROM revisions"
        " WHERE target_kind IN ('order', 'order_shift') AND field IN ('good', 'scrap')"
        " AND order_id = ANY($1::text[])"
        " ORDER BY order_id, site, area, line, machine, revision_id DESC",
        orders,
    )
    out: dict[tuple[str, ...], str] = {
        (r["order_id"], r["site"], r["area"], r["line"], r["machine"]): r["reason"] for r in rows
    }
    acks = await conn.fetch(
        "SELECT target_key, reason FROM revision_latest WHERE target_kind = 'queue_entry'"
        " AND field = 'acknowledged'"
    )
    for a in acks:
        entry = json.loads(a["target_key"])[0]
        if isinstance(entry, str) and entry.startswith("quantity:"):
            _, rest = entry.split(":", 1)
            order_id, site, area, line, machine = rest.rsplit(":", 4)
            out.setdefault((order_id, site, area, line, machine), a["reason"])
    return out


def _line(
    op: asyncpg.Record,
    times: asyncpg.Record | None,
    reason: str | None,
    cfg: ReviewExportSection,
) -> dict[str, Any]:
    changeover = _seconds(times["changeover_s"]) if times else 0.0
    down = _seconds(times["downtime_s"]) - changeover if times else 0.0
    return {
        "order": op["order_id"],
        "operation": cfg.operations.get(op["machine"], op["machine"]),
        "machine": f"{op['site']}/{op['area']}/{op['line']}/{op['machine']}",
        "work_centre": cfg.work_centres.get(op["machine"], op["line"]),
        "yield": int(op["good"]),
        "scrap": int(op["scrap"]),
        "rework": int(op["rework"]),
        "unit": cfg.unit,
        "variance_reason": reason or "",
        "execution_start": _iso(op["started_at"]),
        "execution_finish": _iso(op["ended_at"]),
        "setup_s": changeover,
        "run_s": _seconds(times["run_s"]) if times else 0.0,
        "down_s": round(down, 3),
        "final": op["status"] == "confirmed",
    }


def render(lines: list[dict[str, Any]], fmt: Format, cfg: ReviewExportSection) -> bytes:
    """The file: CSV with a header (UTF-8, delimiter and decimal mark as configured) or JSON."""
    if fmt == "json":
        doc = {"schema": SCHEMA, "lines": lines}
        return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    out = io.StringIO()
    writer = csv.writer(out, delimiter=cfg.delimiter, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for line in lines:
        cells = []
        for column in COLUMNS:
            value = line[column]
            if isinstance(value, bool):
                cells.append("X" if value else "")
            elif isinstance(value, float):
                text = f"{value:.3f}"
                cells.append(text.replace(".", ",") if cfg.decimal_comma else text)
            elif value is None:
                cells.append("")
            else:
                cells.append(str(value))
        writer.writerow(cells)
    return out.getvalue().encode("utf-8")


async def export_confirmations(
    conn: asyncpg.Connection,
    actor: Actor,
    sel: Selection,
    *,
    fmt: Format,
    cfg: ReviewExportSection,
    timezone: str = "UTC",
    check: bool = False,
    today: date | None = None,
) -> Export:
    """Build the export of `sel`; unless `check`, record its new lines in the ledger."""
    actor.require("clerk" if not check else "viewer", "exporting confirmations")
    posting = today or datetime.now(ZoneInfo(timezone)).date()
    async with conn.transaction():
        # One export at a time: the next counter of an operation is decided here.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('mesgw-export', 0))")
        ops = await _operations(conn, sel)
        problems: list[str] = []
        keys: list[tuple[str, ...]] = [
            (r["order_id"], r["site"], r["area"], r["line"], r["machine"]) for r in ops
        ]
        columns = [list(c) for c in zip(*keys, strict=True)] if keys else [[]] * 5
        ledger = await conn.fetch(
            "SELECT * FROM export_lines"
            " WHERE (order_id, site, area, line, machine) IN"
            " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]))"
            " ORDER BY order_id, site, area, line, machine, counter",
            *columns,
        )
        posted: dict[tuple[str, ...], list[asyncpg.Record]] = {}
        for row in ledger:
            pk: tuple[str, ...] = (
                row["order_id"],
                row["site"],
                row["area"],
                row["line"],
                row["machine"],
            )
            posted.setdefault(pk, []).append(row)
        times = await _times(conn, ops)
        reasons = await _variance_reasons(conn, sorted({r["order_id"] for r in ops}))

        lines: list[dict[str, Any]] = []
        new: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        for op, k in zip(ops, keys, strict=True):
            before = posted.get(k, [])
            lines += [json.loads(row["line_data"]) for row in before]
            where = f"order {op['order_id']} on {op['machine']}"
            if op["status"] not in ("completed", "confirmed"):
                problems.append(f"{where}: {op['status']}, not completed: no confirmation yet")
                continue
            if op["held_pending"]:
                problems.append(
                    f"{where}: {op['held_pending']} held counts ({op['held_pending_parts']}"
                    " parts) waiting for a decision"
                )
                continue
            current = _line(op, times.get(k), reasons.get(k), cfg)
            if not before:
                line = {"record_type": "confirmation", **current}
            else:
                sums = {
                    f: sum(_number(json.loads(r["line_data"])[f]) for r in before) for f in _FIGURES
                }
                deltas = {
                    f: (
                        current[f] - int(sums[f])
                        if f in ("yield", "scrap", "rework")
                        else round(current[f] - float(sums[f]), 3)
                    )
                    for f in _FIGURES
                }
                if all(v == 0 for v in deltas.values()) and before[-1]["final"] == current["final"]:
                    continue
                line = {"record_type": "delta", **current, **deltas}
            if line["yield"] < 0 and line["record_type"] == "confirmation":
                problems.append(f"{where}: negative yield {line['yield']}")
                continue
            line["posting_date"] = posting.isoformat()
            line["counter"] = (before[-1]["counter"] if before else 0) + 1
            lines.append(line)
            new.append((k, line))

        content = render(lines, fmt, cfg)
        result = Export(content=content, lines=lines, new=[n for _, n in new], problems=problems)
        if check or not new:
            return result
        actor.require("clerk", "recording an export")
        run_id = await conn.fetchval(
            "INSERT INTO export_runs (user_name, source, selection, format, lines, sha256)"
            " VALUES ($1, $2, $3::jsonb, $4, $5, $6) RETURNING run_id",
            actor.user,
            actor.source,
            json.dumps(sel.as_json()),
            fmt,
            len(new),
            result.sha256,
        )
        for key, line in new:
            await conn.execute(
                "INSERT INTO export_lines (run_id, order_id, site, area, line, machine, counter,"
                " kind, posting_date, final, yield, scrap, rework, setup_s, run_s, down_s,"
                " line_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
                " $14, $15, $16, $17::jsonb)",
                run_id,
                *key,
                line["counter"],
                line["record_type"],
                posting,
                line["final"],
                line["yield"],
                line["scrap"],
                line["rework"],
                Decimal(str(line["setup_s"])),
                Decimal(str(line["run_s"])),
                Decimal(str(line["down_s"])),
                json.dumps(line),
            )
        result.run_id = run_id
        return result


def _number(value: Any) -> Decimal:
    return Decimal(str(value))
