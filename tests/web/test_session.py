"""Browser sessions against a real PostgreSQL store, and the login throttle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import SecretStr

from gateway.config import StoreSection
from gateway.store import migrate
from gateway.web.session import LoginThrottle, Sessions, token_hash


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(StoreSection(dsn=SecretStr(pg_dsn), connect_timeout_s=5))
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        yield p
    finally:
        await p.close()


@pytest.mark.integration
async def test_a_session_lives_until_logout_and_only_its_hash_is_stored(
    pool: asyncpg.Pool,
) -> None:
    sessions = Sessions(pool, idle_s=600, lifetime_s=3600)
    token, session = await sessions.create("clara", "127.0.0.1")
    assert session.username == "clara" and len(session.csrf) >= 32
    [row] = await pool.fetch("SELECT token_sha256, username FROM web_sessions")
    assert tuple(row) == (token_hash(token), "clara")
    assert token not in str(await pool.fetch("SELECT * FROM web_sessions"))

    found = await sessions.get(token)
    assert found is not None and found.csrf == session.csrf
    assert found.csrf_ok(session.csrf) and not found.csrf_ok(None)
    assert not found.csrf_ok(session.csrf[:-1] + "x")
    assert await sessions.get("not-a-token") is None
    assert await sessions.get(None) is None

    await sessions.end(token)
    assert await sessions.get(token) is None


@pytest.mark.integration
async def test_idle_and_expired_sessions_end_and_are_swept(pool: asyncpg.Pool) -> None:
    sessions = Sessions(pool, idle_s=600, lifetime_s=3600)
    idle, _ = await sessions.create("clara", None)
    old, _ = await sessions.create("clara", None)
    fresh, _ = await sessions.create("sam", None)
    now = datetime.now(UTC)
    await pool.execute(
        "UPDATE web_sessions SET last_seen = $2 WHERE token_sha256 = $1",
        token_hash(idle),
        now - timedelta(seconds=601),
    )
    await pool.execute(
        "UPDATE web_sessions SET created_at = $2, expires_at = $3 WHERE token_sha256 = $1",
        token_hash(old),
        now - timedelta(hours=2),
        now - timedelta(seconds=1),
    )
    assert await sessions.sweep() == 2
    assert await sessions.get(idle) is None
    assert await sessions.get(old) is None
    assert await sessions.get(fresh) is not None
    await sessions.create("sam", None)
    assert await sessions.end_all("sam") == 2


def test_the_throttle_locks_after_the_free_attempts_and_doubles() -> None:
    now = [1000.0]
    throttle = LoginThrottle(
        free_attempts=3, window_s=60, first_lock_s=10, max_lock_s=25, clock=lambda: now[0]
    )
    for _ in range(2):
        throttle.failed("user:clara", "ip:10.0.0.9")
        assert throttle.wait_s("user:clara", "ip:10.0.0.9") == 0
    throttle.failed("user:clara", "ip:10.0.0.9")
    assert throttle.wait_s("user:clara") == 10
    assert throttle.wait_s("ip:10.0.0.9") == 10
    assert throttle.wait_s("user:sam", "ip:10.0.0.8") == 0  # others are not held up
    now[0] += 10
    assert throttle.wait_s("user:clara") == 0
    throttle.failed("user:clara")
    assert throttle.wait_s("user:clara") == 20  # doubled
    now[0] += 20
    throttle.failed("user:clara")
    assert throttle.wait_s("user:clara") == 25  # capped
    throttle.succeeded("user:clara")
    assert throttle.wait_s("user:clara") == 0


def test_failures_outside_the_window_are_forgotten() -> None:
    now = [0.0]
    throttle = LoginThrottle(free_attempts=2, window_s=60, clock=lambda: now[0])
    throttle.failed("user:clara")
    now[0] += 61
    throttle.failed("user:clara")
    assert throttle.wait_s("user:clara") == 0
