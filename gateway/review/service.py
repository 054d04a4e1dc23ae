"""`mesgw review --config FILE`: the review service beside the database, until SIGTERM: the
JSON API under /api/v1/ (gateway/review/api.py) and the review page (gateway/web), over
HTTPS when `[web] tls_cert_file`/`tls_key_file` are set."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from gateway import __version__
from gateway.config import Settings, StoreSection
from gateway.errors import GatewayError, StoreError
from gateway.logging import get_logger
from gateway.metrics import MetricsServer
from gateway.review.api import build_app
from gateway.review.metrics import instrument
from gateway.store.db import describe, redact
from gateway.systemd import Notifier
from gateway.web.app import setup_pages
from gateway.web.pages import LIVE_STREAMS

log = get_logger("gateway.review")


async def create_pool(cfg: StoreSection) -> asyncpg.Pool:
    password = cfg.password.get_secret_value() if cfg.password is not None else None
    try:
        pool = await asyncpg.create_pool(
            cfg.dsn.get_secret_value(),
            password=password,
            min_size=1,
            max_size=cfg.pool_size,
            timeout=cfg.connect_timeout_s,
            # The planner cannot see how few rows the shown figures of one window touch; JIT
            # compiling them cost more than running them.
            server_settings={"jit": "off"},
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        reason = redact(str(err) or type(err).__name__, cfg)
        raise StoreError(f"cannot connect to PostgreSQL at {describe(cfg)}: {reason}") from err
    assert pool is not None
    return pool


@dataclass(frozen=True, slots=True)
class Listening:
    port: int  # the page's and the API's
    metrics: MetricsServer | None  # /metrics, /healthz, /readyz (its .port once started)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Listening]:
    """The service listening; yields the bound ports."""
    pool = await create_pool(settings.store)
    tls = settings.web.ssl_context()
    app = build_app(settings, pool)
    page = settings.web.with_default_zone(settings.rules.timezone)
    setup_pages(app, pool, page, settings.review, settings.reasons, secure=tls is not None)
    streams = app[LIVE_STREAMS]
    metrics = instrument(app, pool, lambda: len(streams), settings.metrics)
    serving = asyncio.create_task(metrics.run()) if metrics is not None else None
    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.review.host, settings.review.port, ssl_context=tls)
        try:
            await site.start()
        except OSError as err:
            raise GatewayError(
                f"review service cannot listen on {settings.review.host}:"
                f"{settings.review.port}: {err.strerror or err}"
            ) from err
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        port = int(sockets[0].getsockname()[1]) if sockets else settings.review.port
        if metrics is not None:
            await metrics.wait_started(5)
        yield Listening(port, metrics)
    finally:
        if metrics is not None and serving is not None:
            await metrics.stop()
            await serving
        await runner.cleanup()
        await pool.close()


async def serve(settings: Settings, *, notifier: Notifier | None = None) -> None:
    n = notifier or Notifier()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running(settings) as listening:
            port = listening.port
            log.info("review service started", version=__version__, port=port)
            n.ready(f"serving on {settings.review.host}:{port}")
            await stop.wait()
            n.stopping()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        n.close()
