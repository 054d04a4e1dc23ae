"""The work-order HTTP API (`mesgw order` is its client).

```
POST /api/v1/machines/{machine}/order/start  {"order_id", "product"?, "quantity"?,
                                              "ideal_cycle_time_s"?, "request_id"?}
POST /api/v1/machines/{machine}/order/stop   {"order_id"?, "request_id"?}  ({}: stop what runs)
GET  /api/v1/orders                          {"orders": [...]}: active per machine, and planned
POST /api/v1/orders/import                   a schedule CSV (Content-Type: text/csv)
```

Start and stop answer like the MQTT command topic: `{"ok", "machine", "order_id", "status",
"error", "request_id"}`, with 200 when applied, 409 when the desk refuses (another order
runs, no such order), 404 for an unknown machine, 400/422 for a malformed or wrong body.
Every error is JSON with `"ok": false` and an `error` saying why.

Secure by default: it listens on 127.0.0.1; configuration refuses any other address without
a bearer token (`api.token`). Requests must say `Content-Type: application/json` (or
`text/csv`), which a web page cannot send to another site without the browser asking first,
and without a token the `Host` must be a loopback name: a page the operator has open cannot
start orders, nor read them by DNS rebinding.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.config import Settings, is_loopback
from gateway.errors import GatewayError
from gateway.events import now_utc
from gateway.logging import get_logger
from gateway.orders.commands import (
    CommandError,
    parse_start,
    parse_stop,
    refusal,
    reply,
    request_id_of,
)
from gateway.orders.desk import OrderDesk, ScheduleRejected
from gateway.orders.schedule import ScheduleError, decode_schedule, parse_schedule
from rules.inputs import OrderCommand, OrderOrigin

log = get_logger("gateway.orders.http")

API = "/api/v1"
# A schedule of a few thousand rows is well under this; a command is a few hundred bytes.
MAX_BODY = 4 * 1024 * 1024
# The CLI says who it is, so events tell an operator's command from an integration's.
CLIENT_HEADER = "X-Mesgw-Client"
# Requests still running at stop get this long to finish (a command waits for its commit).
SHUTDOWN_GRACE_S = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(GatewayError):
    """The API cannot serve (e.g. its port is taken)."""


def _json(body: dict[str, Any], status: int = 200, **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers or None)


def _error(status: int, error: str, **extra: Any) -> web.Response:
    return _json({"ok": False, "error": error, **extra}, status)


class OrderApi:
    """Serves the work-order API until `stop()`."""

    def __init__(
        self,
        settings: Settings,
        desk: OrderDesk,
        *,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self._cfg = settings.api
        self._desk = desk
        self._clock = clock
        token = self._cfg.token
        self._token = token.get_secret_value().encode() if token is not None else None
        self._machines: dict[str, int] = {}
        for machine in settings.machines:
            self._machines[machine.id] = self._machines.get(machine.id, 0) + 1
        app = web.Application(middlewares=[self._errors, self._guard], client_max_size=MAX_BODY)
        app.router.add_post(f"{API}/machines/{{machine}}/order/start", self._start)
        app.router.add_post(f"{API}/machines/{{machine}}/order/stop", self._stop_order)
        app.router.add_get(f"{API}/orders", self._list)
        app.router.add_post(f"{API}/orders/import", self._import)
        self._app = app
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._running = False
        self._done = asyncio.Event()
        self.port: int | None = None  # the bound port, once started

    @property
    def url(self) -> str:
        """The API's base URL, once started."""
        host = self._cfg.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def wait_started(self, timeout: float) -> bool:
        """True once the API is listening."""
        try:
            async with asyncio.timeout(timeout):
                await self._started.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Listen until `stop()`; raises ApiError when the address cannot be bound."""
        if self._running or self._done.is_set():
            raise RuntimeError("OrderApi.run() can only be called once")
        self._running = True
        runner = web.AppRunner(
            self._app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._cfg.host, self._cfg.port, reuse_address=True)
            try:
                await site.start()
            except OSError as err:
                raise ApiError(
                    f"api: cannot listen on {self._cfg.host}:{self._cfg.port}: "
                    f"{err.strerror or err}"
                ) from err
            self.port = int(runner.addresses[0][1])
            self._started.set()
            log.info("order api listening", url=self.url, token=self._token is not None)
            await self._stop.wait()
        finally:
            await runner.cleanup()
            self._done.set()

    async def stop(self) -> None:
        """Stop listening; requests in progress get `SHUTDOWN_GRACE_S` to finish."""
        self._stop.set()
        if self._running:
            await self._done.wait()

    # -- middlewares ----------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error as JSON, including aiohttp's own (404, 405, 413)."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            reason = exc.reason
            if exc.status == 413:
                reason = f"request body too large (limit {MAX_BODY} bytes)"
            return _json({"ok": False, "error": reason}, exc.status, **headers)
        except Exception:
            log.exception("order api request failed", path=request.path)
            return _error(500, "internal error; see the gateway log")

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is not None:
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), self._token
            ):
                return _json(
                    {"ok": False, "error": "missing or wrong bearer token"},
                    401,
                    **{"WWW-Authenticate": 'Bearer realm="mesgw"'},
                )
        elif not is_loopback(request.url.host or ""):
            # Without a token the API answers only requests addressed to this machine: a web
            # page resolving its own name to 127.0.0.1 (DNS rebinding) is not one of them.
            return _error(403, "Host must be a loopback address (or configure api.token)")
        if request.method == "POST":
            wanted = "text/csv" if request.path == f"{API}/orders/import" else "application/json"
            if request.content_type != wanted:
                return _error(415, f"Content-Type must be {wanted}")
        return await handler(request)

    # -- handlers ---------------------------------------------------------------------------------

    def _origin(self, request: web.Request) -> OrderOrigin:
        return "cli" if request.headers.get(CLIENT_HEADER, "").lower() == "cli" else "http"

    def _machine(self, request: web.Request) -> str:
        machine = request.match_info["machine"]
        count = self._machines.get(machine, 0)
        if count == 0:
            raise CommandError(f"unknown machine {machine!r} on this gateway")
        if count > 1:
            raise CommandError(f"machine id {machine!r} is on several lines; use MQTT")
        return machine

    async def _start(self, request: web.Request) -> web.Response:
        return await self._command(request, parse_start)

    async def _stop_order(self, request: web.Request) -> web.Response:
        return await self._command(request, parse_stop)

    async def _command(
        self,
        request: web.Request,
        parse: Callable[..., tuple[OrderCommand, str | None]],
    ) -> web.Response:
        machine = request.match_info["machine"]
        body = await request.read()
        try:
            known = self._machine(request)
        except CommandError as err:
            return _json(refusal(machine, err.error, request_id_of(body)), 404)
        origin = self._origin(request)
        try:
            command, request_id = parse(body, machine=known, now=self._clock(), origin=origin)
        except CommandError as err:
            status = 422 if _is_json_object(body) else 400
            log.info("order command refused", origin=origin, machine=machine, error=err.error)
            return _json(refusal(machine, err.error, err.request_id), status)
        try:
            result = await self._desk.submit(command)
        except GatewayError as err:
            log.warning("order command failed", origin=origin, machine=machine, error=str(err))
            return _json(refusal(machine, str(err), request_id), 503)
        log.info(
            "order command",
            origin=origin,
            machine=machine,
            action=command.action,
            order_id=result.order_id or command.order_id,
            ok=result.ok,
            status=result.status,
            error=result.error,
        )
        return _json(reply(result, request_id), 200 if result.ok else 409)

    async def _list(self, request: web.Request) -> web.Response:
        return _json({"orders": self._desk.list_orders()})

    async def _import(self, request: web.Request) -> web.Response:
        charset = (request.charset or "utf-8").lower()
        if charset not in ("utf-8", "utf8"):
            return _error(415, f"charset {charset} not supported: send the CSV as UTF-8")
        data = await request.read()
        try:
            text = decode_schedule(data)
            orders = parse_schedule(text, machines=set(self._machines), source="schedule")
        except ScheduleError as err:
            log.info("schedule refused", problems=len(err.problems))
            return _error(
                422,
                f"schedule refused, nothing imported: {len(err.problems)} problem(s)",
                problems=err.problems,
            )
        try:
            planned = await self._desk.plan(orders)
        except ScheduleRejected as err:
            return _error(409, f"schedule refused, nothing imported: {err}")
        log.info("schedule imported", origin=self._origin(request), orders=planned)
        return _json({"ok": True, "planned": planned})


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False
