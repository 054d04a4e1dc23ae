"""Shared by the review page tests: serving the page on a real store, logging a browser in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from recorded_day import DEMO

from gateway.config import ReviewSection, load_config
from gateway.testing import free_port
from gateway.web.app import setup_pages
from gateway.web.config import WebSection

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
