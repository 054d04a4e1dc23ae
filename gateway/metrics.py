"""Prometheus metrics and health over HTTP: `/metrics`, `/healthz` (alive), `/readyz` (ready).

Reusable by every long-running command: `add_routes()` puts the three endpoints on an
existing aiohttp application (the review service), `MetricsServer` runs them on a small
server of their own (`mesgw run`, `mesgw record`). Values are read from the live objects
when scraped (`Live`), so the hot paths only bump plain integers they keep anyway.
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.config import MetricsSection
from gateway.logging import get_logger
from gateway.waiting import wait_event

log = get_logger("gateway.metrics")

# `_created` series double every counter's cost for a start time the build info implies.
disable_created_metrics()  # type: ignore[no-untyped-call]

# What a readiness check answers: each dependency's name → (ok, detail).
Checks = Mapping[str, tuple[bool, str]]
Readiness = Callable[[], Awaitable[Checks]]


# How often a metrics port that was taken is tried again.
RETRY_S = 30.0


class Live(Collector):
    """Metric families computed at scrape time from the objects that hold the numbers."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        yield from self._collect()


def new_registry(component: str) -> CollectorRegistry:
    """A registry of its own (never the process-global one) with `mesgw_build_info`."""
    registry = CollectorRegistry(auto_describe=True)

    def build() -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "mesgw_build_info",
            "Version of the running mesgw, always 1",
            labels=["version", "component", "python"],
        )
        info.add_metric([__version__, component, platform.python_version()], 1)
        yield info

    registry.register(Live(build))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text exposition format."""
    return generate_latest(registry)


async def _always_ready() -> Checks:
    return {}


def add_routes(
    app: web.Application, registry: CollectorRegistry, ready: Readiness = _always_ready
) -> None:
    """`GET /metrics`, `/healthz` (200 while the process serves) and `/readyz` on `app`.

    `/readyz` answers 200 when every check passes and 503 otherwise, with a JSON body naming
    each dependency, whether it is ok and why not.
    """

    async def metrics(request: web.Request) -> web.Response:
        body = render(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "version": __version__})

    async def readyz(request: web.Request) -> web.Response:
        checks = await ready()
        ok = all(passed for passed, _ in checks.values())
        body: dict[str, Any] = {
            "ready": ok,
            "checks": {name: {"ok": p, "detail": d} for name, (p, d) in checks.items()},
        }
        return web.json_response(body, status=200 if ok else 503)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


class MetricsServer:
    """The three endpoints on their own HTTP server, until `stop()` or cancellation."""

    def __init__(
        self,
        cfg: MetricsSection,
        command: str,
        registry: CollectorRegistry,
        ready: Readiness = _always_ready,
    ) -> None:
        self._host = cfg.host
        self._port = cfg.port_for(command)
        self._app = web.Application()
        add_routes(self._app, registry, ready)
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self.port: int | None = None  # the bound port, once listening

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def wait_started(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._started.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Serve until stopped. A port that is taken is logged once and tried again every
        `RETRY_S`: production recording never stops for want of a metrics endpoint."""
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            failed: str | None = None
            while not self._stop.is_set():
                site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
                try:
                    await site.start()
                    break
                except OSError as err:
                    reason = str(err.strerror or err)
                    if reason != failed:
                        log.error(
                            "metrics: cannot listen; retrying",
                            address=f"{self._host}:{self._port}",
                            error=reason,
                            retry_s=RETRY_S,
                            hint="set metrics.port, or metrics.enabled = false",
                        )
                    failed = reason
                    await wait_event(self._stop, RETRY_S)
            if self._stop.is_set():
                return
            self.port = int(runner.addresses[0][1])
            self._started.set()
            log.info("metrics listening", url=f"{self.url}/metrics")
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def stop(self) -> None:
        self._stop.set()
