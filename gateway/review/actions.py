"""The clerk's actions: each validates, then appends revisions in one transaction.

Nothing here changes a raw row. An action reads the shown figures (the SQL of migration
0009), checks the request against them, and appends one revision per target it changes,
numbered per target: an edit based on an older revision number than the target's is a
Conflict, and the unique key (target, number) makes two simultaneous edits of the same state
one success and one Conflict. Any refusal raises before anything is written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import asyncpg

from gateway.review.errors import Conflict, Invalid, Locked, NotFound
from gateway.review.users import Actor
from rules.config import ReasonConfig

Figure = Literal["good", "scrap", "rework"]
FIGURES: Final[tuple[str, ...]] = ("good", "scrap", "rework")


@dataclass(frozen=True, slots=True)
class Target:
    """One thing revisions apply to, with its key columns."""

    kind: Literal["order", "order_shift", "downtime", "held_count", "queue_entry"]
    site: str | None = None
    area: str | None = None
    line: str | None = None
    machine: str | None = None
    order_id: str | None = None
    shift_id: str | None = None
    downtime_id: str | None = None
    held_id: str | None = None
    entry: str | None = None

    @property
    def key(self) -> str:
        """The target in one text: a JSON array of its key columns (injective)."""
        if self.kind in ("order", "order_shift"):
            parts: list[str | None] = [self.order_id, self.site, self.area, self.line, self.machine]
            if self.kind == "order_shift":
                parts.append(self.shift_id)
        elif self.kind == "downtime":
            parts = [self.downtime_id]
        elif self.kind == "held_count":
            parts = [self.held_id]
        else:
            parts = [self.entry]
        return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Operation:
    """One order on one machine: what the ERP calls an operation."""

    order_id: str
    site: str
    area: str
    line: str
    machine: str

    @property
    def path(self) -> str:
        return f"{self.site}/{self.area}/{self.line}/{self.machine}"

    def target(self, shift_id: str | None = None) -> Target:
        return Target(
            kind="order" if shift_id is None else "order_shift",
            site=self.site,
            area=self.area,
            line=self.line,
            machine=self.machine,
            order_id=self.order_id,
            shift_id=shift_id,
        )


@dataclass(frozen=True, slots=True)
class Write:
    target: Target
    field: str
    old: Any
    new: Any
    expected: int | None = None  # the target's revision the edit was based on


@dataclass(frozen=True, slots=True)
class Change:
    """What one action wrote: its change id and the revisions, as stored."""

    change_id: str
    action: str
    revisions: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"change_id": self.change_id, "action": self.action, "revisions": self.revisions}


def _reason(text: str | None) -> str:
    if text is None or not text.strip():
        raise Invalid("a reason is required: say why (it is kept with the revision)")
    return text.strip()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def _append(
    conn: asyncpg.Connection, actor: Actor, action: str, reason: str, writes: Sequence[Write]
) -> Change:
    """Append the revisions of one action (inside the caller's transaction)."""
    change_id = str(uuid.uuid4())
    rows = []
    for w in writes:
        current = await revision_of(conn, w.target)
        if w.expected is not None and w.expected != current:
            raise Conflict(
                f"{describe(w.target)} is at revision {current}, the edit was based on "
                f"revision {w.expected}: reload and decide again"
            )
        t = w.target
        try:
            row = await conn.fetchrow(
                "INSERT INTO revisions (change_id, user_name, source, action, target_kind,"
                " target_key, target_rev, site, area, line, machine, order_id, shift_id,"
                " downtime_id, held_id, field, old_value, new_value, reason)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
                " $16, $17::jsonb, $18::jsonb, $19)"
                " RETURNING revision_id, created_at, target_rev",
                uuid.UUID(change_id),
                actor.user,
                actor.source,
                action,
                t.kind,
                t.key,
                current + 1,
                t.site,
                t.area,
                t.line,
                t.machine,
                t.order_id,
                t.shift_id,
                t.downtime_id,
                t.held_id,
                w.field,
                None if w.old is None else json.dumps(_jsonable(w.old)),
                None if w.new is None else json.dumps(_jsonable(w.new)),
                reason,
            )
        except asyncpg.UniqueViolationError as err:
            raise Conflict(f"{describe(t)} was changed at the same moment: reload") from err
        except asyncpg.ForeignKeyViolationError as err:
            raise NotFound(f"no user {actor.user!r}") from err
        assert row is not None
        rows.append(
            {
                "revision_id": row["revision_id"],
                "created_at": row["created_at"].isoformat(),
                "user": actor.user,
                "source": actor.source,
                "target": t.kind,
                "target_key": t.key,
                "revision": row["target_rev"],
                "field": w.field,
                "old": _jsonable(w.old),
                "new": _jsonable(w.new),
                "reason": reason,
            }
        )
    return Change(change_id=change_id, action=action, revisions=rows)


async def revision_of(conn: asyncpg.Connection, target: Target) -> int:
    """The target's current revision number (0: never revised)."""
    value = await conn.fetchval(
        "SELECT coalesce(max(target_rev), 0) FROM revisions"
        " WHERE target_kind = $1 AND target_key = $2",
        target.kind,
        target.key,
    )
    return int(value)


def describe(t: Target) -> str:
    if t.kind == "order":
        return f"order {t.order_id} on {t.machine}"
    if t.kind == "order_shift":
        return f"order {t.order_id} on {t.machine} in shift {t.shift_id}"
    if t.kind == "downtime":
        return f"downtime {t.downtime_id}"
    if t.kind == "held_count":
        return f"held count {t.held_id}"
    return f"queue entry {t.entry}"


async def _lock(conn: asyncpg.Connection, *keys: str) -> None:
    # Read-validate-write of one target is serialised, so no check passes on figures another
    # transaction is about to change; keys in one order, so two actions cannot deadlock.
    for key in sorted(set(keys)):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)


# --- orders --------------------------------------------------------------------------------


async def operations(
    conn: asyncpg.Connection, order_id: str, machine: str | None = None
) -> list[asyncpg.Record]:
    """The order's operations as shown, optionally only one machine's (id or path)."""
    rows = await conn.fetch(
        "SELECT * FROM order_operations_shown(p_order => $1) ORDER BY site, area, line, machine",
        order_id,
    )
    if not rows:
        raise NotFound(f"no order {order_id!r}")
    if machine is None:
        return list(rows)
    chosen = [
        r
        for r in rows
        if machine in (r["machine"], f"{r['site']}/{r['area']}/{r['line']}/{r['machine']}")
    ]
    if not chosen:
        ran = ", ".join(r["machine"] for r in rows)
        raise NotFound(f"order {order_id!r} did not run on {machine!r} (it ran on {ran})")
    if len(chosen) > 1:
        raise Invalid(f"machine {machine!r} is ambiguous for order {order_id!r}: name its path")
    return chosen


async def operation(conn: asyncpg.Connection, order_id: str, machine: str | None) -> asyncpg.Record:
    rows = await operations(conn, order_id, machine)
    if len(rows) > 1:
        ran = ", ".join(r["machine"] for r in rows)
        raise Invalid(f"order {order_id!r} ran on several machines ({ran}): name one")
    return rows[0]


def _op(row: asyncpg.Record) -> Operation:
    return Operation(row["order_id"], row["site"], row["area"], row["line"], row["machine"])


def _unlocked(row: asyncpg.Record) -> None:
    if row["status"] == "confirmed":
        raise Locked(
            f"order {row['order_id']} on {row['machine']} is confirmed"
            f" (by {row['confirmed_by']}): a supervisor must reopen it before any correction"
        )


def _figure(name: str) -> str:
    if name not in FIGURES:
        raise Invalid(f"figure {name!r}: must be one of {', '.join(FIGURES)}")
    return name


def _new_value(current: int, value: int | None, delta: int | None, what: str) -> int:
    if (value is None) == (delta is None):
        raise Invalid("give either a new value or a delta (+N / -N), not both or neither")
    new = value if value is not None else current + (delta or 0)
    if new < 0:
        raise Invalid(f"{what} would be {new}: a count cannot be negative")
    if new == current:
        raise Invalid(f"{what} is {current} already: nothing to correct")
    return new


async def adjust(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    order_id: str,
    machine: str | None,
    figure: str,
    value: int | None = None,
    delta: int | None = None,
    shift_id: str | None = None,
    reason: str | None,
    expected_revision: int | None = None,
) -> Change:
    """Set good, scrap or rework of an order's operation, or of it within one shift."""
    actor.require("clerk", "correcting counts")
    text = _reason(reason)
    name = _figure(figure)
    async with conn.transaction():
        row = await operation(conn, order_id, machine)
        op = _op(row)
        target = op.target(shift_id)
        await _lock(conn, op.target().key, target.key)
        row = await operation(conn, order_id, op.path)
        _unlocked(row)
        if shift_id is None:
            current = int(row[name])
        else:
            shift = await conn.fetchrow(
                "SELECT * FROM order_shifts_shown($1)"
                " WHERE site = $2 AND area = $3 AND line = $4 AND machine = $5 AND shift_id = $6",
                op.order_id,
                op.site,
                op.area,
                op.line,
                op.machine,
                shift_id,
            )
            if shift is None:
                known = await conn.fetchval("SELECT 1 FROM shifts WHERE shift_id = $1", shift_id)
                if known is None:
                    raise NotFound(f"no shift {shift_id!r}")
                current = 0
            else:
                current = int(shift[name])
        where = f"{name} of order {op.order_id} on {op.machine}" + (
            f" in shift {shift_id}" if shift_id else ""
        )
        new = _new_value(current, value, delta, where)
        if shift_id is not None and int(row[name]) + new - current < 0:
            raise Invalid(f"{name} of order {op.order_id} on {op.machine} would be negative")
        return await _append(
            conn,
            actor,
            "adjust",
            text,
            [Write(target, name, current, new, expected_revision)],
        )


async def move(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    order_id: str,
    machine: str | None,
    to_order: str,
    figure: str,
    parts: int,
    reason: str | None,
    expected_revision: int | None = None,
) -> Change:
    """Move parts booked on one order to another order's operation on the same machine."""
    actor.require("clerk", "moving parts")
    text = _reason(reason)
    name = _figure(figure)
    if parts <= 0:
        raise Invalid(f"parts to move must be at least 1, not {parts}")
    if to_order == order_id:
        raise Invalid("source and destination order are the same")
    async with conn.transaction():
        src = _op(await operation(conn, order_id, machine))
        dst_rows = await operations(conn, to_order, src.path)
        dst = _op(dst_rows[0])
        await _lock(conn, src.target().key, dst.target().key)
        a = await operation(conn, order_id, src.path)
        b = (await operations(conn, to_order, src.path))[0]
        _unlocked(a)
        _unlocked(b)
        have = int(a[name])
        if parts > have:
            raise Invalid(
                f"order {order_id} on {src.machine} has {have} {name}: cannot move {parts}"
            )
        return await _append(
            conn,
            actor,
            "move",
            text,
            [
                Write(src.target(), name, have, have - parts, expected_revision),
                Write(dst.target(), name, int(b[name]), int(b[name]) + parts),
            ],
        )


async def confirm(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    order_id: str,
    machine: str | None = None,
    reason: str | None = None,
    expected_revision: int | None = None,
) -> Change:
    """Confirm an order's operations (all, or one machine's): locks them against corrections."""
    actor.require("clerk", "confirming an order")
    text = _reason(reason or "confirmed")
    async with conn.transaction():
        rows = await operations(conn, order_id, machine)
        await _lock(conn, *(_op(r).target().key for r in rows))
        rows = await operations(conn, order_id, machine)
        writes = []
        for r in rows:
            if r["status"] == "confirmed":
                raise Invalid(f"order {order_id} on {r['machine']} is confirmed already")
            if r["status"] != "completed":
                raise Invalid(
                    f"order {order_id} on {r['machine']} is {r['status']}: only a completed"
                    " order can be confirmed"
                )
            if r["held_pending"]:
                raise Invalid(
                    f"order {order_id} on {r['machine']} has {r['held_pending']} held counts"
                    f" ({r['held_pending_parts']} parts) waiting: accept or reject them first"
                )
            writes.append(
                Write(_op(r).target(), "status", r["status"], "confirmed", expected_revision)
            )
        return await _append(conn, actor, "confirm", text, writes)


async def reopen(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    order_id: str,
    machine: str | None = None,
    reason: str | None,
    expected_revision: int | None = None,
) -> Change:
    """Reopen a confirmed order (supervisor): it can be corrected, then confirmed again."""
    actor.require("supervisor", "reopening a confirmed order")
    text = _reason(reason)
    async with conn.transaction():
        rows = await operations(conn, order_id, machine)
        await _lock(conn, *(_op(r).target().key for r in rows))
        rows = await operations(conn, order_id, machine)
        confirmed = [r for r in rows if r["status"] == "confirmed"]
        if not confirmed:
            raise Invalid(f"order {order_id} is not confirmed: nothing to reopen")
        writes = [
            Write(_op(r).target(), "status", "confirmed", "completed", expected_revision)
            for r in confirmed
        ]
        return await _append(conn, actor, "reopen", text, writes)


async def _order_not_locked(
    conn: asyncpg.Connection,
    order_id: str | None,
    site: str,
    area: str,
    line: str,
    machine: str,
    what: str,
) -> None:
    if order_id is None:
        return
    status = await conn.fetchval(
        "SELECT status FROM order_operations_shown(p_order => $1)"
        " WHERE site = $2 AND area = $3 AND line = $4 AND machine = $5",
        order_id,
        site,
        area,
        line,
        machine,
    )
    if status == "confirmed":
        raise Locked(
            f"{what} belongs to order {order_id} on {machine}, which is confirmed: a supervisor"
            " must reopen the order first"
        )


# --- held counts ---------------------------------------------------------------------------


async def decide_held(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    held_id: str,
    accept: bool,
    parts: int | None = None,
    reason: str | None,
    expected_revision: int | None = None,
) -> Change:
    """Accept a held count (all, or `parts` of it) or reject it."""
    actor.require("clerk", "deciding a held count")
    text = _reason(reason)
    target = Target(kind="held_count", held_id=held_id)
    async with conn.transaction():
        await _lock(conn, target.key)
        held = await conn.fetchrow("SELECT * FROM held_counts_shown WHERE held_id = $1", held_id)
        if held is None:
            raise NotFound(f"no held count {held_id!r}")
        await _order_not_locked(
            conn,
            held["order_id"],
            held["site"],
            held["area"],
            held["line"],
            held["machine"],
            f"held count {held_id}",
        )
        if accept:
            number = held["claimed"] if parts is None else parts
            if number < 1 or number > held["claimed"]:
                raise Invalid(
                    f"held count {held_id} claims {held['claimed']} parts: accept 1 to"
                    f" {held['claimed']}, not {number} (reject it to count none)"
                )
        else:
            if parts is not None:
                raise Invalid("a rejection counts no parts: give no number")
            number = 0
        old = None if held["decision"] == "pending" else int(held["accepted"])
        if old == number:
            raise Invalid(f"held count {held_id} is {held['decision']} with {number} parts already")
        return await _append(
            conn,
            actor,
            "accept" if accept else "reject",
            text,
            [Write(target, "accepted", old, number, expected_revision)],
        )


# --- downtimes -----------------------------------------------------------------------------


async def downtime(conn: asyncpg.Connection, downtime_id: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM downtimes_shown WHERE downtime_id = $1", downtime_id)
    if row is None:
        merged = await conn.fetchval(
            "SELECT new_value #>> '{}' FROM revision_latest WHERE target_kind = 'downtime'"
            " AND downtime_id = $1 AND field = 'merged_into'",
            downtime_id,
        )
        if merged is not None:
            raise NotFound(f"downtime {downtime_id} was merged into {merged}")
        raise NotFound(f"no downtime {downtime_id!r}")
    return row


def _reason_value(entry: ReasonConfig) -> dict[str, Any]:
    return {
        "reason_code": entry.code,
        "reason_text": entry.text,
        "category": entry.category,
        "planned": entry.planned,
        "loss": entry.loss,
    }


def _shown_reason(row: asyncpg.Record) -> dict[str, Any] | None:
    if row["reason_code"] is None and row["reason_text"] is None:
        return None
    return {
        "reason_code": row["reason_code"],
        "reason_text": row["reason_text"],
        "category": row["category"],
        "planned": row["planned"],
        "loss": row["loss"],
    }


async def recode(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    downtime_id: str,
    code: str,
    catalog: Sequence[ReasonConfig],
    reason: str | None,
    expected_revision: int | None = None,
) -> Change:
    """Set or change a downtime's reason to an entry of the reason catalog."""
    actor.require("clerk", "recoding a downtime")
    text = _reason(reason)
    entry = next((r for r in catalog if r.code == code), None)
    if entry is None:
        known = ", ".join(r.code for r in catalog) or "none: add [[reasons]] to the config"
        raise Invalid(f"reason code {code!r} is not in the catalog (known: {known})")
    target = Target(kind="downtime", downtime_id=downtime_id)
    async with conn.transaction():
        await _lock(conn, target.key)
        row = await downtime(conn, downtime_id)
        await _order_not_locked(
            conn,
            row["order_id"],
            row["site"],
            row["area"],
            row["line"],
            row["machine"],
            f"downtime {downtime_id}",
        )
        old = _shown_reason(row)
        new = _reason_value(entry)
        if old is not None and old["reason_code"] == new["reason_code"]:
            raise Invalid(f"downtime {downtime_id} has reason {code} already")
        return await _append(
            conn, actor, "recode", text, [Write(target, "reason", old, new, expected_revision)]
        )


async def split(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    downtime_id: str,
    at: datetime,
    reason: str | None,
    expected_revision: int | None = None,
) -> Change:
    """Split an ended downtime at `at`: it ends there, a new piece takes the rest.

    The piece's id is `<lineage>~<n>`; both keep the recorded downtime as lineage.
    """
    actor.require("clerk", "splitting a downtime")
    text = _reason(reason)
    if at.tzinfo is None:
        raise Invalid("the split time needs a time zone (e.g. 2025-03-04T10:15:00Z)")
    target = Target(kind="downtime", downtime_id=downtime_id)
    async with conn.transaction():
        first = await downtime(conn, downtime_id)
        lineage = first["lineage"]
        await _lock(conn, target.key, f"lineage:{lineage}")
        row = await downtime(conn, downtime_id)
        await _order_not_locked(
            conn,
            row["order_id"],
            row["site"],
            row["area"],
            row["line"],
            row["machine"],
            f"downtime {downtime_id}",
        )
        if row["end_ts"] is None:
            raise Invalid(f"downtime {downtime_id} has not ended: split it once it has")
        if not row["start_ts"] < at < row["end_ts"]:
            raise Invalid(
                f"{at.isoformat()} is not inside downtime {downtime_id}"
                f" ({row['start_ts'].isoformat()} to {row['end_ts'].isoformat()})"
            )
        pieces = await conn.fetchval(
            "SELECT count(*) FROM revisions WHERE target_kind = 'downtime' AND field = 'created'"
            " AND new_value->>'lineage' = $1",
            lineage,
        )
        piece = Target(
            kind="downtime",
            downtime_id=f"{lineage}~{pieces + 1}",
            site=row["site"],
            area=row["area"],
            line=row["line"],
            machine=row["machine"],
            order_id=row["order_id"],
            shift_id=row["shift_id"],
        )
        created = {
            "lineage": lineage,
            "split_from": downtime_id,
            "start": at.isoformat(),
            "end": row["end_ts"].isoformat(),
            **(_shown_reason(row) or {}),
        }
        return await _append(
            conn,
            actor,
            "split",
            text,
            [
                Write(target, "end", row["end_ts"], at, expected_revision),
                Write(piece, "created", None, created, 0),
            ],
        )


async def merge(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    downtime_id: str,
    with_id: str,
    reason: str | None,
    expected_revision: int | None = None,
) -> Change:
    """Merge two adjacent downtimes of one machine, order and shift into the earlier one."""
    actor.require("clerk", "merging downtimes")
    text = _reason(reason)
    if downtime_id == with_id:
        raise Invalid("a downtime cannot be merged with itself")
    async with conn.transaction():
        await _lock(
            conn,
            Target(kind="downtime", downtime_id=downtime_id).key,
            Target(kind="downtime", downtime_id=with_id).key,
        )
        a, b = await downtime(conn, downtime_id), await downtime(conn, with_id)
        if b["start_ts"] < a["start_ts"]:
            a, b = b, a
        for row in (a, b):
            await _order_not_locked(
                conn,
                row["order_id"],
                row["site"],
                row["area"],
                row["line"],
                row["machine"],
                f"downtime {row['downtime_id']}",
            )
        same = ("site", "area", "line", "machine", "order_id", "shift_id")
        if any(a[k] != b[k] for k in same):
            raise Invalid(
                "only downtimes of the same machine, order and shift can be merged"
                f" ({a['downtime_id']}: {a['machine']}, {a['order_id']}, {a['shift_id']};"
                f" {b['downtime_id']}: {b['machine']}, {b['order_id']}, {b['shift_id']})"
            )
        if a["end_ts"] is None or a["end_ts"] > b["start_ts"]:
            raise Invalid(f"{a['downtime_id']} does not end before {b['downtime_id']} starts")
        between = await conn.fetchval(
            "SELECT string_agg(downtime_id, ', ') FROM downtimes_shown"
            " WHERE site = $1 AND area = $2 AND line = $3 AND machine = $4"
            " AND start_ts >= $5 AND start_ts < $6 AND downtime_id NOT IN ($7, $8)",
            a["site"],
            a["area"],
            a["line"],
            a["machine"],
            a["end_ts"],
            b["start_ts"],
            a["downtime_id"],
            b["downtime_id"],
        )
        if between:
            raise Invalid(f"not adjacent: {between} lies between them")
        first = Target(kind="downtime", downtime_id=a["downtime_id"])
        second = Target(kind="downtime", downtime_id=b["downtime_id"])
        expected_first = expected_revision if a["downtime_id"] == downtime_id else None
        expected_second = expected_revision if b["downtime_id"] == downtime_id else None
        return await _append(
            conn,
            actor,
            "merge",
            text,
            [
                Write(first, "end", a["end_ts"], b["end_ts"], expected_first),
                Write(second, "merged_into", None, a["downtime_id"], expected_second),
            ],
        )


# --- queue entries -------------------------------------------------------------------------


async def acknowledge(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    entry: str,
    fingerprint: Any,
    reason: str | None,
) -> Change:
    """Resolve a queue entry without a correction (the reason says why it is right)."""
    actor.require("clerk", "acknowledging a queue entry")
    text = _reason(reason)
    target = Target(kind="queue_entry", entry=entry)
    async with conn.transaction():
        await _lock(conn, target.key)
        return await _append(
            conn, actor, "acknowledge", text, [Write(target, "acknowledged", None, fingerprint)]
        )
