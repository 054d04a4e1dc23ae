"""The clerk's forms: each POST runs one action of the clerk's loop (gateway.review.actions).

A form names the target's revision it was rendered with, so an edit made on a stale page is
a conflict, shown next to the form, not a silent overwrite. A refused action (missing
reason, negative result, confirmed order, …) re-renders the order page with the error next
to the form that caused it and what the clerk typed; nothing was written. A success
redirects back to the order (POST-redirect-GET) with what was done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.review import actions
from gateway.review.errors import Forbidden, Invalid, ReviewError
from gateway.review.users import Actor
from gateway.web.auth import AUTH, FORM_ERRORS, FORM_STATUS, FORM_VALUES, USER, User
from gateway.web.pages import REASONS, order_detail

Action = Callable[[Any, Actor, dict[str, str]], Awaitable[tuple[str, str]]]


def _int(form: dict[str, str], name: str, label: str) -> int | None:
    text = form.get(name, "").strip().replace("\u202f", "").replace(",", "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError as err:
        raise Invalid(f"{label}: {text!r} is not a whole number") from err


def _revision(form: dict[str, str]) -> int | None:
    return _int(form, "revision", "revision")


def _local_time(form: dict[str, str], name: str, zone: Any) -> datetime:
    text = form.get(name, "").strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise Invalid(f"{text!r} is not a time (YYYY-MM-DD HH:MM:SS)") from err
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


async def _adjust(conn: Any, actor: Actor, f: dict[str, str]) -> tuple[str, str]:
    figure = f.get("figure", "")
    value = _int(f, "value", figure or "value")
    delta = _int(f, "delta", "change")
    await actions.adjust(
        conn,
        actor,
        order_id=f["order_id"],
        machine=f.get("machine") or None,
        figure=figure,
        value=value,
        delta=delta,
        shift_id=f.get("shift_id") or None,
        reason=f.get("reason"),
        expected_revision=_revision(f),
    )
    scope = f" in shift {f['shift_id']}" if f.get("shift_id") else ""
    return f["order_id"], f"{figure} of {f['order_id']} on {f.get('machine')}{scope} corrected"


async def _move(conn: Any, actor: Actor, f: dict[str, str]) -> tuple[str, str]:
    parts = _int(f, "parts", "parts") or 0
    await actions.move(
        conn,
        actor,
        order_id=f["order_id"],
        machine=f.get("machine") or None,
        to_order=f.get("to_order", "").strip(),
        figure=f.get("figure", "good"),
        parts=parts,
        reason=f.get("reason"),
        expected_revision=_revision(f),
    )
    return f["order_id"], f"{parts} {f.get('figure', 'good')} parts moved to {f.get('to_order')}"


async def _confirm(conn: Any, actor: Actor, f: dict[str, str]) -> tuple[str, str]:
    await actions.confirm(
        conn,
        actor,
        order_id=f["order_id"],
        machine=f.get("machine") or None,
        reason=f.get("reason") or None,
        expected_revision=_revision(f),
    )
    return f["order_id"], f"order {f['order_id']} confirmed"


async def _reopen(conn: Any, actor: Actor, f: dict[str, str]) -> tuple[str, str]:
    await actions.reopen(
        conn,
        actor,
        order_id=f["order_id"],
        machine=f.get("machine") or None,
        reason=f.get("reason"),
        expected_revision=_revision(f),
    )
    return f["order_id"], f"order {f['order_id']} reopened"


async def _held(conn: Any, actor: Actor, f: dict[str, str]) -> tuple[str, str]:
    accept = f.get("decision") != "reject"
    parts = _int(f, "parts", "parts to accept") if accept else None
    await actions.decide_held(
        conn,
        actor,
        held_id=f["held_id"],
        accept=accept,
        parts=parts,
        reason=f.get("reason"),
        expected_revision=_revision(f),
    )
    verb = "rejected" if not accept else f"accepted ({parts if parts is not None else 'all'})"
    return f["order_id"], f"held count {f['held_id']} {verb}"


def _recode(reasons: list[Any]) -> Action:
    async def run(conn: Any, actor: Actor, f: dict[str, str]) -> tuple[str, str]:
        await actions.recode(
            conn,
            actor,
            downtime_id=f["downtime_id"],
            code=f.get("code", "").strip(),
            catalog=reasons,
            reason=f.get("reason"),
            expected_revision=_revision(f),
        )
        return f["order_id"], f"downtime {f['downtime_id']} recoded"

    return run


def _split(zone: Any) -> Action:
    async def run(conn: Any, actor: Actor, f: dict[str, str]) -> tuple[str, str]:
        at = _local_time(f, "at", zone)
        await actions.split(
            conn,
            actor,
            downtime_id=f["downtime_id"],
            at=at,
            reason=f.get("reason"),
            expected_revision=_revision(f),
        )
        return f["order_id"], f"downtime {f['downtime_id']} split"

    return run


async def _merge(conn: Any, actor: Actor, f: dict[str, str]) -> tuple[str, str]:
    await actions.merge(
        conn,
        actor,
        downtime_id=f["downtime_id"],
        with_id=f.get("with_id", "").strip(),
        reason=f.get("reason"),
        expected_revision=_revision(f),
    )
    return f["order_id"], f"downtimes {f['downtime_id']} and {f.get('with_id')} merged"


def form_key(form: dict[str, str]) -> str:
    """Which form on the order page sent this: its errors and values go back to it."""
    if form.get("downtime_id") or form.get("held_id"):
        return form.get("downtime_id") or form["held_id"]
    machine = form.get("machine", "").rpartition("/")[2]
    return f"{machine}/{form['shift_id']}" if form.get("shift_id") else machine


async def submit(request: web.Request) -> web.StreamResponse:
    """POST /orders/{order_id}/{action}: run the action; redirect, or show the error."""
    auth = request.app[AUTH]
    user: User = request[USER]
    name = request.match_info["action"]
    table: dict[str, Action] = {
        "adjust": _adjust,
        "move": _move,
        "confirm": _confirm,
        "reopen": _reopen,
        "held": _held,
        "recode": _recode(request.app[REASONS]),
        "split": _split(auth.settings.zone),
        "merge": _merge,
    }
    if name not in table:
        raise web.HTTPNotFound(text=f"no action {name!r}")
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    form["order_id"] = request.match_info["order_id"]
    actor = Actor(user=user.name, role=user.role, source="web")
    try:
        async with auth.pool.acquire() as conn:
            order_id, done = await table[name](conn, actor, form)
    except Forbidden as err:
        raise web.HTTPForbidden(text=str(err)) from err
    except (ReviewError, KeyError) as err:
        message = str(err) if isinstance(err, ReviewError) else f"missing field {err}"
        key = f"{name}:{form_key(form)}"
        request[FORM_ERRORS] = {key: message}
        request[FORM_VALUES] = {key: form}
        request[FORM_STATUS] = getattr(err, "status", 422)
        return await order_detail(request)
    raise web.HTTPSeeOther(f"/orders/{quote(order_id, safe='')}?done={quote(done)}")
