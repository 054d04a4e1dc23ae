"""The review page served on a real store holding the simulated line's recorded day, and a
real browser (Debian's chromium through Playwright) to use it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from recorded_day import load
from web_support import CHROMIUM, CHROMIUM_ARGS, PASSWORDS, Site, serve

from gateway.config import StoreSection
from gateway.review.users import add_user
from gateway.store import migrate
from gateway.web.auth import set_password


@pytest.fixture
async def recorded(pg_dsn: str) -> str:
    """A migrated store with the recorded day and three users, one per role."""
    await migrate(StoreSection(dsn=SecretStr(pg_dsn), connect_timeout_s=5))
    await load(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        for name, role in (("clara", "clerk"), ("vic", "viewer"), ("sam", "supervisor")):
            await add_user(conn, name, role)
            await set_password(conn, name, PASSWORDS[name])
    finally:
        await conn.close()
    return pg_dsn


@pytest.fixture
async def site(recorded: str) -> AsyncIterator[Site]:
    runner, s, pool = await serve(recorded)
    try:
        yield s
    finally:
        await runner.cleanup()
        await pool.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
