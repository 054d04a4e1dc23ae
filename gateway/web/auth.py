"""Who is at the page, and what they may do: login, logout, roles, CSRF.

Roles rank viewer < clerk < supervisor: a viewer reads, a clerk corrects, confirms and
exports, a supervisor also reopens confirmed orders. A browser is known by its session cookie
(gateway/web/session.py) or, in trusted-proxy mode, by the header a single-sign-on proxy sets
on requests from an address in `web.trusted_proxies`; the user must exist in `users` either
way, and their role comes from there, never from the request.

Every POST from a page carries a CSRF token: the session's, or for a proxy user an HMAC of
their name under a key made at start-up. The login form, before any session exists, uses a
double-submit cookie. A POST without the right token is refused with 403 before its body is
read; nothing is written.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

from aiohttp import web

from gateway.logging import get_logger
from gateway.review.errors import Invalid
from gateway.review.users import ROLES, Role, hash_secret, user_role, verify_secret
from gateway.web.config import WebSection
from gateway.web.session import COOKIE, LoginThrottle, Sessions

log = get_logger("gateway.web.auth")

RANK: Final[dict[str, int]] = {role: i for i, role in enumerate(ROLES)}
LOGIN_COOKIE = "mesgw_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
# Paths a browser may fetch before logging in.
PUBLIC_PREFIXES: Final = (
    "/login",
    "/static/",
    "/favicon.ico",
    "/healthz",
    "/readyz",
    "/metrics",
)

# Verified when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))
MIN_PASSWORD = 10


async def set_password(conn: Any, name: str, password: str) -> None:
    """Give a user a login password (stored as an argon2id hash); NotFound for no such
    user, Invalid for a password shorter than MIN_PASSWORD characters."""
    await user_role(conn, name)
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"a password needs at least {MIN_PASSWORD} characters")
    await conn.execute(
        "UPDATE users SET password_hash = $2 WHERE name = $1", name, hash_secret(password)
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    via: Literal["session", "proxy"]
    csrf: str

    def may(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


class WebAuth:
    """The page's authentication state: sessions, throttle, proxy CSRF key, settings."""

    def __init__(self, pool: Any, settings: WebSection, *, secure_cookie: bool) -> None:
        self.pool = pool
        self.settings = settings
        self.sessions = Sessions(
            pool, idle_s=settings.session_idle_s, lifetime_s=settings.session_lifetime_s
        )
        # Per user name, and per address with four times the attempts: people behind one
        # terminal or NAT mistype too, but one address guessing many names is held up.
        self.throttle = LoginThrottle(
            free_attempts=settings.login_free_attempts,
            first_lock_s=settings.login_first_lock_s,
            max_lock_s=settings.login_max_lock_s,
        )
        self.address_throttle = LoginThrottle(
            free_attempts=settings.login_free_attempts * 4,
            first_lock_s=settings.login_first_lock_s,
            max_lock_s=settings.login_max_lock_s,
        )
        self.secure_cookie = secure_cookie or settings.tls_behind_proxy
        self._proxy_key = secrets.token_bytes(32)

    async def role_of(self, name: str) -> Role | None:
        role: Role | None = await self.pool.fetchval("SELECT role FROM users WHERE name = $1", name)
        return role

    async def verify_password(self, name: str, password: str) -> Role | None:
        """The user's role when the password is theirs; None otherwise (same cost either
        way). A user without a password (API-only) cannot log in."""
        row = await self.pool.fetchrow(
            "SELECT role, password_hash FROM users WHERE name = $1", name
        )
        stored = row["password_hash"] if row is not None else None
        if not verify_secret(stored or _DUMMY_HASH, password):
            return None
        return row["role"] if row is not None and stored else None

    def proxy_csrf(self, name: str) -> str:
        return hmac.new(self._proxy_key, name.encode(), hashlib.sha256).hexdigest()

    async def user_of(self, request: web.Request) -> User | None:
        header = self.settings.trusted_proxy_header
        if header and self.settings.trusts(request.remote):
            name = request.headers.get(header, "").strip()
            if name:
                role = await self.role_of(name)
                if role is None:
                    log.warning("proxy user unknown", user=name)
                    return None
                return User(name, role, "proxy", self.proxy_csrf(name))
        session = await self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            return None
        role = await self.role_of(session.username)
        if role is None:  # the user was removed: the session dies with them
            await self.sessions.end(request.cookies.get(COOKIE))
            return None
        return User(session.username, role, "session", session.csrf)

    def set_session_cookie(self, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookie,
            path="/",
            max_age=int(self.settings.session_lifetime_s),
        )

    def clear_session_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")


AUTH: Final = web.AppKey("web_auth", WebAuth)
USER: Final = web.RequestKey("web_user", User)
# A refused form: its error and values per form, and the status the page is answered with.
FORM_ERRORS: Final = web.RequestKey("web_form_errors", dict)
FORM_VALUES: Final = web.RequestKey("web_form_values", dict)
FORM_STATUS: Final = web.RequestKey("web_form_status", int)


def csrf_offered(request: web.Request, form: Any | None) -> str | None:
    if CSRF_HEADER in request.headers:
        return request.headers[CSRF_HEADER]
    if form is not None:
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages need a user; a POST needs the user's CSRF token. The JSON API under /api/
    authenticates on its own (bearer tokens) and is left alone here."""
    path = request.path
    if path.startswith("/api/") or path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    auth = request.app[AUTH]
    user = await auth.user_of(request)
    if user is None:
        if request.method in ("GET", "HEAD"):
            target = request.path_qs
            raise web.HTTPSeeOther(f"/login?next={quote(target, safe='')}")
        raise web.HTTPUnauthorized(text="log in first")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        form = None
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
        if not hmac.compare_digest(csrf_offered(request, form) or "", user.csrf):
            log.warning("csrf refused", user=user.name, path=path)
            raise web.HTTPForbidden(text="the form's security token is missing or stale")
    request[USER] = user
    return await handler(request)


def require(request: web.Request, role: Role) -> User:
    """The request's user, who must hold `role`; 403 otherwise."""
    user: User = request[USER]
    if not user.may(role):
        raise web.HTTPForbidden(text=f"{user.name} is a {user.role}: this needs a {role}")
    return user
