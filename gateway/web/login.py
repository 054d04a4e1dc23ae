"""Login and logout pages."""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from gateway.logging import get_logger
from gateway.web.auth import AUTH, CSRF_FIELD, LOGIN_COOKIE, USER

log = get_logger("gateway.web.login")


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute URL an attacker chose."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _page(
    request: web.Request, *, error: str | None = None, username: str = "", status: int = 200
) -> web.Response:
    auth = request.app[AUTH]
    # One token per browser until it logs in: two login pages open (or a favicon fetch
    # redirected here) must not invalidate each other.
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
    context: dict[str, Any] = {
        "user": None,
        "login_csrf": token,
        "next": _safe_next(request.query.get("next")),
        "error": error,
        "username": username,
        "messages": [],
    }
    response = aiohttp_jinja2.render_template("login.html", request, context, status=status)
    # Double-submit: the form's hidden value must match this cookie (no session exists yet).
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=auth.secure_cookie,
        path="/login",
        max_age=3600,
    )
    return response


async def login_form(request: web.Request) -> web.Response:
    return _page(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH]
    form = await request.post()
    offered = form.get(CSRF_FIELD)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not isinstance(offered, str) or not cookie or not hmac.compare_digest(offered, cookie):
        raise web.HTTPForbidden(text="the login form's security token is missing or stale")
    name = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    remote = request.remote or "?"
    wait = max(auth.throttle.wait_s(name), auth.address_throttle.wait_s(remote))
    if wait > 0:
        log.warning("login throttled", user=name, remote=remote, wait_s=round(wait))
        return _page(
            request,
            error=f"Too many failed attempts: try again in {int(wait) + 1} s.",
            username=name,
            status=429,
        )
    role = await auth.verify_password(name, password) if name and password else None
    if role is None:
        auth.throttle.failed(name)
        auth.address_throttle.failed(remote)
        log.warning("login failed", user=name, remote=remote)
        return _page(request, error="Wrong user name or password.", username=name, status=401)
    auth.throttle.succeeded(name)
    token, _ = await auth.sessions.create(name, remote)
    log.info("login", user=name, role=role, remote=remote)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next", "/"))))
    auth.set_session_cookie(response, token)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH]
    await auth.sessions.end(request.cookies.get("mesgw_session"))
    log.info("logout", user=request[USER].name)
    response = web.HTTPSeeOther("/login")
    auth.clear_session_cookie(response)
    raise response
