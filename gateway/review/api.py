"""The review service's JSON API, versioned under /api/v1/ (aiohttp).

Every route is one row of ROUTES: method, path, the least role it needs, its summary and its
request model; the router and the OpenAPI document (gateway/review/openapi.py) are both made
from that table, and a test keeps the committed document in step. Errors are JSON
`{"error": "...", "kind": "Conflict"}` with the status of the error: 401 no or bad
credentials, 403 role too low, 404 unknown target, 409 stale revision or confirmed order,
422 invalid request (nothing was written).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import Settings
from gateway.review import actions
from gateway.review.auth import Authenticator, BearerTokens, middleware, principal_of
from gateway.review.errors import Invalid, NotFound, ReviewError
from gateway.review.export import Selection, export_confirmations
from gateway.review.queue import review_queue
from gateway.review.users import Role

API: Final = "/api/v1"
MAX_BODY: Final = 256 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdjustBody(Body):
    machine: str | None = Field(None, description="machine id or site/area/line/machine path")
    figure: Literal["good", "scrap", "rework"]
    value: int | None = Field(None, ge=0, description="the new figure")
    delta: int | None = Field(None, description="or the change, e.g. -12")
    shift: str | None = Field(None, description="correct the order within this shift")
    reason: str = Field(description="why: kept with the revision")
    expected_revision: int = Field(ge=0, description="the revision the edit is based on")


class MoveBody(Body):
    machine: str | None = None
    to_order: str = Field(min_length=1)
    figure: Literal["good", "scrap", "rework"]
    parts: int = Field(ge=1)
    reason: str
    expected_revision: int = Field(ge=0)


class ConfirmBody(Body):
    machine: str | None = None
    reason: str | None = None
    expected_revision: int | None = Field(None, ge=0)


class ReopenBody(Body):
    machine: str | None = None
    reason: str
    expected_revision: int | None = Field(None, ge=0)


class AcceptBody(Body):
    parts: int | None = Field(None, ge=1, description="default: every part claimed")
    reason: str
    expected_revision: int = Field(ge=0)


class RejectBody(Body):
    reason: str
    expected_revision: int = Field(ge=0)


class RecodeBody(Body):
    code: str = Field(min_length=1, description="a code of the reason catalog ([[reasons]])")
    reason: str
    expected_revision: int = Field(ge=0)


class SplitBody(Body):
    at: datetime
    reason: str
    expected_revision: int = Field(ge=0)


class MergeBody(Body):
    with_: str = Field(alias="with", min_length=1, description="the adjacent downtime")
    reason: str
    expected_revision: int = Field(ge=0)


class AcknowledgeBody(Body):
    key: str = Field(min_length=1, description="the queue entry's key")
    reason: str
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None


class ExportBody(Body):
    order: str | None = None
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    format: Literal["csv", "json"] = "csv"


B = TypeVar("B", bound=Body)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler_name: str
    role: Role | None  # None: public
    summary: str
    body: type[Body] | None = None
    query: tuple[str, ...] = ()
    produces: tuple[str, ...] = ("application/json",)


ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/openapi.json", "openapi", None, "this API's OpenAPI document"),
    Route("GET", "/me", "me", "viewer", "the calling user and role"),
    Route(
        "GET",
        "/queue",
        "queue",
        "viewer",
        "the review queue per line and shift",
        query=("from", "to", "site", "area", "line", "shift", "machine"),
    ),
    Route(
        "POST",
        "/queue/acknowledge",
        "acknowledge",
        "clerk",
        "resolve a queue entry without a correction",
        body=AcknowledgeBody,
    ),
    Route(
        "GET", "/orders", "orders", "viewer", "orders' operations as shown", query=("from", "to")
    ),
    Route("GET", "/orders/{order_id}", "order", "viewer", "one order: operations, shifts, records"),
    Route(
        "POST",
        "/orders/{order_id}/adjust",
        "adjust",
        "clerk",
        "set good / scrap / rework of an operation (or within a shift)",
        body=AdjustBody,
    ),
    Route(
        "POST",
        "/orders/{order_id}/move",
        "move",
        "clerk",
        "move parts to another order on the same machine",
        body=MoveBody,
    ),
    Route(
        "POST", "/orders/{order_id}/confirm", "confirm", "clerk", "confirm (lock)", body=ConfirmBody
    ),
    Route(
        "POST",
        "/orders/{order_id}/reopen",
        "reopen",
        "supervisor",
        "reopen a confirmed order",
        body=ReopenBody,
    ),
    Route("GET", "/held-counts/{held_id}", "held", "viewer", "one held count and its decision"),
    Route(
        "POST",
        "/held-counts/{held_id}/accept",
        "accept",
        "clerk",
        "accept all or part of a held count",
        body=AcceptBody,
    ),
    Route(
        "POST",
        "/held-counts/{held_id}/reject",
        "reject",
        "clerk",
        "reject a held count",
        body=RejectBody,
    ),
    Route("GET", "/downtimes/{downtime_id}", "downtime", "viewer", "one downtime as shown"),
    Route(
        "POST",
        "/downtimes/{downtime_id}/reason",
        "recode",
        "clerk",
        "set or change a downtime's reason",
        body=RecodeBody,
    ),
    Route(
        "POST",
        "/downtimes/{downtime_id}/split",
        "split",
        "clerk",
        "split a downtime at a time",
        body=SplitBody,
    ),
    Route(
        "POST",
        "/downtimes/{downtime_id}/merge",
        "merge",
        "clerk",
        "merge an adjacent downtime into this one",
        body=MergeBody,
    ),
    Route(
        "GET",
        "/revisions",
        "revisions",
        "viewer",
        "revisions, newest first",
        query=("order", "downtime", "held", "limit"),
    ),
    Route(
        "GET",
        "/counts",
        "counts",
        "viewer",
        "count records",
        query=("machine", "shift", "order", "quality", "from", "to"),
    ),
    Route(
        "GET",
        "/states",
        "states",
        "viewer",
        "state intervals",
        query=("machine", "shift", "order", "bucket", "from", "to"),
    ),
    Route(
        "GET",
        "/export/confirmations",
        "export_check",
        "viewer",
        "the export as it would be (check mode: records nothing)",
        query=("order", "from", "to", "format"),
        produces=("text/csv", "application/json"),
    ),
    Route(
        "POST",
        "/export/confirmations",
        "export",
        "clerk",
        "export confirmations and record the new lines in the ledger",
        body=ExportBody,
        produces=("text/csv", "application/json"),
    ),
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _record(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in dict(row).items()}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _time(request: web.Request, name: str) -> datetime | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise Invalid(f"{name}: {text!r} is not an ISO-8601 time") from err
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class ReviewApi:
    """The handlers; one pool of connections to the store."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.cfg = settings.review
        self.pool = pool

    def _window(self, request: web.Request) -> tuple[datetime, datetime]:
        end = _time(request, "to") or datetime.now(UTC)
        start = _time(request, "from") or end - timedelta(days=self.cfg.queue_days)
        if end <= start:
            raise Invalid("to must be after from")
        return start, end

    async def _body(self, request: web.Request, model: type[B]) -> B:
        if request.content_type != "application/json":
            raise Invalid("send the body as Content-Type: application/json")
        try:
            return model.model_validate_json(await request.read())
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()
            )
            raise Invalid(problems) from err

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        from gateway.review.openapi import document

        return _json(document())

    async def me(self, request: web.Request) -> web.StreamResponse:
        p = principal_of(request)
        return _json({"user": p.user, "role": p.role, "via": p.via})

    async def queue(self, request: web.Request) -> web.StreamResponse:
        start, end = self._window(request)
        q = request.query
        async with self.pool.acquire() as conn:
            entries = await review_queue(
                conn,
                self.cfg,
                start=start,
                end=end,
                site=q.get("site"),
                area=q.get("area"),
                line=q.get("line"),
                shift=q.get("shift"),
                machine=q.get("machine"),
            )
        return _json({"from": _plain(start), "to": _plain(end), "entries": entries})

    async def acknowledge(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, AcknowledgeBody)
        end = body.to or datetime.now(UTC)
        start = body.from_ or end - timedelta(days=self.cfg.queue_days)
        async with self.pool.acquire() as conn:
            entries = await review_queue(conn, self.cfg, start=start, end=end)
            entry = next((e for e in entries if e["key"] == body.key), None)
            if entry is None:
                raise NotFound(f"no unresolved queue entry {body.key!r} in that window")
            change = await actions.acknowledge(
                conn,
                principal_of(request).actor(),
                entry=body.key,
                fingerprint=entry["fingerprint"],
                reason=body.reason,
            )
        return _json(change.as_json(), 201)

    async def orders(self, request: web.Request) -> web.StreamResponse:
        start, end = self._window(request)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM order_operations_shown($1, $2)"
                " ORDER BY started_at, order_id, site, area, line, machine",
                start,
                end,
            )
        return _json({"operations": [_record(r) for r in rows]})

    async def order(self, request: web.Request) -> web.StreamResponse:
        order_id = request.match_info["order_id"]
        async with self.pool.acquire() as conn:
            ops = await conn.fetch(
                "SELECT * FROM order_operations_shown(p_order => $1)"
                " ORDER BY site, area, line, machine",
                order_id,
            )
            if not ops:
                raise NotFound(f"no order {order_id!r}")
            shifts = await conn.fetch(
                "SELECT * FROM order_shifts_shown($1) ORDER BY site, area, line, machine, shift_id",
                order_id,
            )
            held = await conn.fetch(
                "SELECT * FROM held_counts_shown WHERE order_id = $1 ORDER BY ts", order_id
            )
            downtimes = await conn.fetch(
                "SELECT * FROM downtimes_shown WHERE order_id = $1 ORDER BY machine, start_ts",
                order_id,
            )
            revisions = await conn.fetch(
                "SELECT * FROM revisions WHERE order_id = $1 ORDER BY revision_id", order_id
            )
        return _json(
            {
                "order_id": order_id,
                "operations": [_record(r) for r in ops],
                "shifts": [_record(r) for r in shifts],
                "held_counts": [_record(r) for r in held],
                "downtimes": [_record(r) for r in downtimes],
                "revisions": [_record(r) for r in revisions],
            }
        )

    async def adjust(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, AdjustBody)
        async with self.pool.acquire() as conn:
            change = await actions.adjust(
                conn,
                principal_of(request).actor(),
                order_id=request.match_info["order_id"],
                machine=body.machine,
                figure=body.figure,
                value=body.value,
                delta=body.delta,
                shift_id=body.shift,
                reason=body.reason,
                expected_revision=body.expected_revision,
            )
        return _json(change.as_json(), 201)

    async def move(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, MoveBody)
        async with self.pool.acquire() as conn:
            change = await actions.move(
                conn,
                principal_of(request).actor(),
                order_id=request.match_info["order_id"],
                machine=body.machine,
                to_order=body.to_order,
                figure=body.figure,
                parts=body.parts,
                reason=body.reason,
                expected_revision=body.expected_revision,
            )
        return _json(change.as_json(), 201)

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, ConfirmBody)
        async with self.pool.acquire() as conn:
            change = await actions.confirm(
                conn,
                principal_of(request).actor(),
                order_id=request.match_info["order_id"],
                machine=body.machine,
                reason=body.reason,
                expected_revision=body.expected_revision,
            )
        return _json(change.as_json(), 201)

    async def reopen(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, ReopenBody)
        async with self.pool.acquire() as conn:
            change = await actions.reopen(
                conn,
                principal_of(request).actor(),
                order_id=request.match_info["order_id"],
                machine=body.machine,
                reason=body.reason,
                expected_revision=body.expected_revision,
            )
        return _json(change.as_json(), 201)

    async def held(self, request: web.Request) -> web.StreamResponse:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM held_counts_shown WHERE held_id = $1", request.match_info["held_id"]
            )
        if row is None:
            raise NotFound(f"no held count {request.match_info['held_id']!r}")
        return _json(_record(row))

    async def accept(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, AcceptBody)
        async with self.pool.acquire() as conn:
            change = await actions.decide_held(
                conn,
                principal_of(request).actor(),
                held_id=request.match_info["held_id"],
                accept=True,
                parts=body.parts,
                reason=body.reason,
                expected_revision=body.expected_revision,
            )
        return _json(change.as_json(), 201)

    async def reject(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, RejectBody)
        async with self.pool.acquire() as conn:
            change = await actions.decide_held(
                conn,
                principal_of(request).actor(),
                held_id=request.match_info["held_id"],
                accept=False,
                reason=body.reason,
                expected_revision=body.expected_revision,
            )
        return _json(change.as_json(), 201)

    async def downtime(self, request: web.Request) -> web.StreamResponse:
        async with self.pool.acquire() as conn:
            row = await actions.downtime(conn, request.match_info["downtime_id"])
        return _json(_record(row))

    async def recode(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, RecodeBody)
        async with self.pool.acquire() as conn:
            change = await actions.recode(
                conn,
                principal_of(request).actor(),
                downtime_id=request.match_info["downtime_id"],
                code=body.code,
                catalog=self.settings.reasons,
                reason=body.reason,
                expected_revision=body.expected_revision,
            )
        return _json(change.as_json(), 201)

    async def split(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, SplitBody)
        async with self.pool.acquire() as conn:
            change = await actions.split(
                conn,
                principal_of(request).actor(),
                downtime_id=request.match_info["downtime_id"],
                at=body.at,
                reason=body.reason,
                expected_revision=body.expected_revision,
            )
        return _json(change.as_json(), 201)

    async def merge(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, MergeBody)
        async with self.pool.acquire() as conn:
            change = await actions.merge(
                conn,
                principal_of(request).actor(),
                downtime_id=request.match_info["downtime_id"],
                with_id=body.with_,
                reason=body.reason,
                expected_revision=body.expected_revision,
            )
        return _json(change.as_json(), 201)

    async def revisions(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            limit = min(int(q.get("limit", "200")), 1000)
        except ValueError as err:
            raise Invalid("limit must be a whole number") from err
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM revisions"
                " WHERE ($1::text IS NULL OR order_id = $1)"
                " AND ($2::text IS NULL OR downtime_id = $2)"
                " AND ($3::text IS NULL OR held_id = $3)"
                " ORDER BY revision_id DESC LIMIT $4",
                q.get("order"),
                q.get("downtime"),
                q.get("held"),
                limit,
            )
        return _json({"revisions": [_record(r) for r in rows]})

    async def counts(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        quality = q.get("quality")
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM counts WHERE ($1::text IS NULL OR machine = $1)"
                " AND ($2::text IS NULL OR shift_id = $2) AND ($3::text IS NULL OR order_id = $3)"
                " AND ($4::text IS NULL OR quality = $4)"
                " AND ($5::timestamptz IS NULL OR interval_start >= $5)"
                " AND ($6::timestamptz IS NULL OR interval_start < $6)"
                " ORDER BY interval_start, machine LIMIT 5000",
                q.get("machine"),
                q.get("shift"),
                q.get("order"),
                quality,
                _time(request, "from"),
                _time(request, "to"),
            )
        return _json({"counts": [_record(r) for r in rows]})

    async def states(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        order = q.get("order")
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM state_intervals WHERE ($1::text IS NULL OR machine = $1)"
                " AND ($2::text IS NULL OR shift_id = $2)"
                " AND ($3::text IS NULL OR ($3 = 'none' AND order_id IS NULL) OR order_id = $3)"
                " AND ($4::text IS NULL OR bucket = $4)"
                " AND ($5::timestamptz IS NULL OR start_ts >= $5)"
                " AND ($6::timestamptz IS NULL OR start_ts < $6)"
                " ORDER BY start_ts, machine LIMIT 5000",
                q.get("machine"),
                q.get("shift"),
                order,
                q.get("bucket"),
                _time(request, "from"),
                _time(request, "to"),
            )
        return _json({"states": [_record(r) for r in rows]})

    async def _export(
        self, request: web.Request, sel: Selection, fmt: str, check: bool
    ) -> web.StreamResponse:
        if fmt not in ("csv", "json"):
            raise Invalid("format must be csv or json")
        async with self.pool.acquire() as conn:
            out = await export_confirmations(
                conn,
                principal_of(request).actor(),
                sel,
                fmt="json" if fmt == "json" else "csv",
                cfg=self.cfg.export,
                timezone=self.settings.rules.timezone,
                check=check,
            )
        response = web.Response(
            body=out.content,
            content_type="application/json" if fmt == "json" else "text/csv",
            charset="utf-8",
        )
        response.headers["X-Mesgw-New-Lines"] = str(len(out.new))
        response.headers["X-Mesgw-Sha256"] = out.sha256
        if out.run_id is not None:
            response.headers["X-Mesgw-Export-Run"] = str(out.run_id)
        if out.problems:
            response.headers["X-Mesgw-Problems"] = json.dumps(out.problems)
        return response

    async def export_check(self, request: web.Request) -> web.StreamResponse:
        sel = Selection(
            order=request.query.get("order"), start=_time(request, "from"), end=_time(request, "to")
        )
        return await self._export(request, sel, request.query.get("format", "csv"), check=True)

    async def export(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, ExportBody)
        sel = Selection(order=body.order, start=body.from_, end=body.to)
        return await self._export(request, sel, body.format, check=False)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ReviewError as err:
        response = _json({"error": str(err), "kind": type(err).__name__}, err.status)
        if err.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="mesgw"'
        return response


def _guard(role: Role | None, handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if role is not None:
            principal_of(request).actor().require(role, f"{request.method} {request.path}")
        return await handler(request)

    return guarded


def build_app(
    settings: Settings, pool: asyncpg.Pool, authenticators: list[Authenticator] | None = None
) -> web.Application:
    """The aiohttp application: routes from ROUTES, errors as JSON, bearer-token auth."""
    api = ReviewApi(settings, pool)
    auths = authenticators or [BearerTokens(pool, settings.review.token_cache_s)]
    public = frozenset(API + r.path for r in ROUTES if r.role is None)
    app = web.Application(
        client_max_size=MAX_BODY, middlewares=[_errors, middleware(auths, public)]
    )
    for route in ROUTES:
        handler = getattr(api, route.handler_name)
        app.router.add_route(route.method, API + route.path, _guard(route.role, handler))
    return app
