"""The review page on the review service's aiohttp application.

`setup_pages(app, pool, settings, review, reasons, secure=...)` adds the pages, their forms,
the live stream, the static files and the login to an application that already serves the
JSON API under /api/v1/ (gateway/review); both read and write through the same store and the
same actions, so the page can do nothing the API could not.

    GET  /                       a day's or a shift's overview per line
    GET  /queue                  the review queue          POST /queue/acknowledge
    GET  /orders/{id}            an order's detail         POST /orders/{id}/{action}
    GET  /export                 the ERP export page       POST /export/download
    GET  /live                   server-sent events: active downtimes, held counts
    GET  /login  POST /login  POST /logout
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway.config import ReviewSection
from gateway.web import format as fmt
from gateway.web.actions import submit
from gateway.web.auth import AUTH, WebAuth, auth_middleware
from gateway.web.config import WebSection
from gateway.web.login import login_form, login_submit, logout
from gateway.web.pages import (
    LIVE_STREAMS,
    REASONS,
    REVIEW,
    end_live_streams,
    export_download,
    export_page,
    live,
    order_detail,
    overview,
    queue_acknowledge,
    queue_page,
)

HERE = Path(__file__).parent


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    """No framing, no sniffing, scripts and styles only from this site; pages not cached."""
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def setup_pages(
    app: web.Application,
    pool: Any,
    settings: WebSection,
    review: ReviewSection,
    reasons: list[Any],
    *,
    secure: bool,
) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        parts=fmt.parts,
        duration=fmt.duration,
        percent=fmt.percent,
        clock=fmt.clock,
        value=fmt.value,
        isotime=fmt.isotime,
        tojson_sorted=fmt.tojson_sorted,
        entry_words=fmt.entry_words,
    )
    app[AUTH] = WebAuth(pool, settings, secure_cookie=secure)
    app[REVIEW] = review
    app[REASONS] = list(reasons)
    app[LIVE_STREAMS] = set()
    app.on_shutdown.append(end_live_streams)
    app.middlewares.append(security_headers)
    app.middlewares.append(auth_middleware)
    app.router.add_static("/static/", HERE / "static", append_version=False)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", overview)
    app.router.add_get("/queue", queue_page)
    app.router.add_post("/queue/acknowledge", queue_acknowledge)
    app.router.add_get("/orders/{order_id}", order_detail)
    app.router.add_post("/orders/{order_id}/{action}", submit)
    app.router.add_get("/export", export_page)
    app.router.add_post("/export/download", export_download)
    app.router.add_get("/live", live)
