"""The review page served on a real store holding the simulated line's recorded day, and a
real browser (Debian's chromium through Playwright) to use it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from pydantic import SecretStr

from gateway.config import ReviewSection, StoreSection, load_config
from gateway.review.users import add_user
from gateway.store import migrate
from gateway.testing import free_port
from gateway.web.app import setup_pages
from gateway.web.auth import set_password
from gateway.web.config import WebSection

sys.path.insert(0, str(Path(__file__).parent))
from recorded_day import DEMO, load

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots of the main pages, written by every run (not committed; README links them).
SHOTS = Path(__file__).resolve().parents[2] / ".cache" / "screenshots"
PASSWORDS = {"clara": "clerk-pass-123", "vic": "viewer-pass-123", "sam": "super-pass-123"}


@dataclass
class Site:
    url: str
    pool: asyncpg.Pool
    dsn: str


async def serve(dsn: str, **web_settings: Any) -> tuple[web.AppRunner, Site, asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    app = web.Application()
    settings = WebSection(timezone="Europe/Berlin", **web_settings)
    reasons = load_config(DEMO / "config.toml").reasons
    setup_pages(app, pool, settings, ReviewSection(), reasons, secure=False)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, Site(f"http://127.0.0.1:{port}", pool, dsn), pool


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


async def log_in(browser: Any, site: Site, name: str, **context: Any) -> Any:
    """A new browser context logged in as `name`; returns its page."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, **context)
    page = await ctx.new_page()
    page.set_default_timeout(10_000)
    await page.goto(site.url + "/")
    assert page.url.startswith(site.url + "/login")
    await page.fill("#username", name)
    await page.fill("#password", PASSWORDS[name])
    await page.click("button[type=submit]")
    await page.wait_for_url(site.url + "/")
    return page
