"""Who is calling the review API: authenticators, a middleware, and role checks per route.

An authenticator looks at a request and answers with a Principal, with None when the request
carries no credentials of its kind, or raises Unauthenticated when it carries bad ones. The
middleware asks each in turn; routes not marked public need a principal, and each route names
the least role it needs. This issue has one authenticator, bearer API tokens (`mgw_…`, stored
as argon2id hashes). The login page of the next issue adds a cookie-session authenticator
(principals with `via = "session"`, whose revisions say source `web`) and a CSRF check for
unsafe methods of session principals: both slot in here without touching the handlers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.review.errors import Unauthenticated
from gateway.review.users import Actor, Role, Source, check_token

PRINCIPAL: Final = web.RequestKey("principal", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: Role
    via: Literal["token", "session"]

    def actor(self) -> Actor:
        source: Source = "web" if self.via == "session" else "api"
        return Actor(user=self.user, role=self.role, source=source)


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> Principal | None: ...


class BearerTokens:
    """`Authorization: Bearer mgw_<id>_<secret>`; a verified token is cached for `cache_s`."""

    def __init__(self, pool: asyncpg.Pool, cache_s: float) -> None:
        self._pool = pool
        self._cache_s = cache_s
        # sha256 of the token -> (principal, valid until): argon2 is slow on purpose, and a
        # page makes many calls. Only a digest of the token is held.
        self._cache: dict[bytes, tuple[Principal, float]] = {}

    async def authenticate(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization must be 'Bearer <API token>'")
        token = token.strip()
        digest = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        async with self._pool.acquire() as conn:
            user, role = await check_token(conn, token)
        principal = Principal(user=user, role=role, via="token")
        if self._cache_s > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (principal, now + self._cache_s)
        return principal


def middleware(authenticators: Sequence[Authenticator], public: frozenset[str]) -> Middleware:
    """Sets request[PRINCIPAL]; refuses with 401 a non-public route without credentials."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            # The review page's own routes: gateway/web/auth.py knows its users by session.
            return await handler(request)
        principal: Principal | None = None
        for auth in authenticators:
            principal = await auth.authenticate(request)
            if principal is not None:
                break
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else request.path
        if principal is None and canonical not in public:
            raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
        request[PRINCIPAL] = principal
        return await handler(request)

    return authenticate


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise Unauthenticated("authentication required")
    return principal
