"""Browser sessions for the review page: login, cookie, CSRF, expiry, throttling.

- A login creates a session: a random token in a cookie (HttpOnly, SameSite=Strict, Secure
  when the page is served over TLS or says it is behind a TLS proxy). The store keeps only the
  token's SHA-256, the user, a per-session CSRF token and the expiry.
- A session ends at logout, after `idle_s` without a request, or `lifetime_s` after login.
- Every state-changing request from a browser carries the session's CSRF token (a hidden
  form field, or the X-CSRF-Token header for scripts); without it, or with another, it is
  refused before anything is read from the body.
- Failed logins are throttled per user name (and, with four times the attempts, per client
  address): after `free_attempts` failures within `window_s` the next attempt waits,
  doubling up to `max_lock_s`. A success
  clears the user's count. Throttling holds in memory: a restart forgets it, which costs an
  attacker a restart of our service per `free_attempts` guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

COOKIE = "mesgw_session"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    csrf: str
    expires_at: datetime

    def csrf_ok(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered, self.csrf)


class Sessions:
    """Sessions in the store's `web_sessions` table (migration 0013), over an asyncpg pool."""

    def __init__(self, pool: Any, *, idle_s: float, lifetime_s: float) -> None:
        self.pool = pool
        self.idle = timedelta(seconds=idle_s)
        self.lifetime = timedelta(seconds=lifetime_s)

    async def create(self, username: str, remote: str | None) -> tuple[str, Session]:
        """A new session for `username`: the cookie's token and the session."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        expires = now + self.lifetime
        await self.pool.execute(
            "INSERT INTO web_sessions (token_sha256, username, csrf, created_at, last_seen,"
            " expires_at, remote) VALUES ($1, $2, $3, $4, $4, $5, $6)",
            token_hash(token),
            username,
            csrf,
            now,
            expires,
            remote,
        )
        return token, Session(username, csrf, expires)

    async def get(self, token: str | None) -> Session | None:
        """The live session for a cookie's token, its idle clock restarted; None when the
        token is unknown, idle too long or past its lifetime (such a row is removed)."""
        if not token:
            return None
        now = datetime.now(UTC)
        row = await self.pool.fetchrow(
            "UPDATE web_sessions SET last_seen = $2"
            " WHERE token_sha256 = $1 AND expires_at > $2 AND last_seen > $2 - $3::interval"
            " RETURNING username, csrf, expires_at",
            token_hash(token),
            now,
            self.idle,
        )
        if row is None:
            await self.pool.execute(
                "DELETE FROM web_sessions WHERE token_sha256 = $1", token_hash(token)
            )
            return None
        return Session(row["username"], row["csrf"], row["expires_at"])

    async def end(self, token: str | None) -> None:
        if token:
            await self.pool.execute(
                "DELETE FROM web_sessions WHERE token_sha256 = $1", token_hash(token)
            )

    async def end_all(self, username: str) -> int:
        """Log a user out everywhere (a changed password or role, a removed user)."""
        status: str = await self.pool.execute(
            "DELETE FROM web_sessions WHERE username = $1", username
        )
        return int(status.split()[-1])

    async def sweep(self) -> int:
        """Remove expired and idle sessions; returns how many."""
        now = datetime.now(UTC)
        status: str = await self.pool.execute(
            "DELETE FROM web_sessions WHERE expires_at <= $1 OR last_seen <= $1 - $2::interval",
            now,
            self.idle,
        )
        return int(status.split()[-1])


@dataclass
class _Failures:
    times: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lock_s: float = 0.0


class LoginThrottle:
    """Failed-login throttling per key (user name, client address)."""

    def __init__(
        self,
        *,
        free_attempts: int = 5,
        window_s: float = 900.0,
        first_lock_s: float = 30.0,
        max_lock_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_attempts = free_attempts
        self.window_s = window_s
        self.first_lock_s = first_lock_s
        self.max_lock_s = max_lock_s
        self.clock = clock
        self._keys: dict[str, _Failures] = {}

    def wait_s(self, *keys: str) -> float:
        """Seconds before another attempt on any of these keys is heard; 0 when free."""
        now = self.clock()
        waits = [self._keys[k].locked_until - now for k in keys if k in self._keys]
        return max([0.0, *waits])

    def failed(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            f = self._keys.setdefault(key, _Failures())
            f.times = [t for t in f.times if now - t < self.window_s] + [now]
            if len(f.times) >= self.free_attempts:
                f.lock_s = min(self.max_lock_s, f.lock_s * 2 if f.lock_s else self.first_lock_s)
                f.locked_until = now + f.lock_s
        if len(self._keys) > 10_000:  # forget the oldest quiet keys, bounded memory
            quiet = [k for k, f in self._keys.items() if f.locked_until < now]
            for k in quiet[: len(quiet) // 2]:
                del self._keys[k]

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)
