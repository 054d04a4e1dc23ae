"""The review service's metrics and health, on the metrics port (`[metrics]`, 9466 on
loopback by default) like `mesgw run` and `mesgw record`, never on the page's port.

`/metrics`: build info; requests by kind (page, api, static) and status class and their
latency; database errors; the pool's size and idle connections; open live streams.
`/healthz` answers while the process serves; `/readyz` while the database answers.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.config import MetricsSection
from gateway.metrics import Checks, Live, MetricsServer, new_registry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ReviewTelemetry:
    """Counts kept by a middleware, read at scrape time."""

    def __init__(self, pool: asyncpg.Pool, live_streams: Callable[[], int]) -> None:
        self.pool = pool
        self.live_streams = live_streams
        self.requests: Counter[tuple[str, str]] = Counter()
        self.db_errors = 0
        self.registry: CollectorRegistry = new_registry("review")
        self.seconds = Histogram(
            "mesgw_review_request_seconds",
            "Time from request to response, by kind of route",
            ["kind"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )
        self.registry.register(Live(self.collect))

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "mesgw_review_requests", "Requests answered", labels=["kind", "status"]
        )
        for (kind, status), n in sorted(self.requests.items()):
            requests.add_metric([kind, status], n)
        yield requests
        yield CounterMetricFamily(
            "mesgw_review_db_errors", "Requests that failed on the database", value=self.db_errors
        )
        yield GaugeMetricFamily(
            "mesgw_review_db_pool_size", "Database connections open", value=self.pool.get_size()
        )
        yield GaugeMetricFamily(
            "mesgw_review_db_pool_idle",
            "Database connections idle",
            value=self.pool.get_idle_size(),
        )
        yield GaugeMetricFamily(
            "mesgw_review_live_streams", "Pages receiving live updates", value=self.live_streams()
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path == "/live":
            return await handler(request)  # a stream that lasts as long as the page
        kind = (
            "api"
            if path.startswith("/api/")
            else "static"
            if path.startswith("/static/")
            else "page"
        )
        started = time.perf_counter()
        status = "5xx"
        try:
            response = await handler(request)
            status = f"{response.status // 100}xx"
            return response
        except web.HTTPException as err:
            status = f"{err.status // 100}xx"
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            self.db_errors += 1
            raise
        finally:
            self.requests[(kind, status)] += 1
            self.seconds.labels(kind).observe(time.perf_counter() - started)

    async def checks(self) -> Checks:
        try:
            async with self.pool.acquire(timeout=5) as conn:
                await conn.fetchval("SELECT 1")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as err:
            self.db_errors += 1
            return {"database": (False, str(err) or type(err).__name__)}
        return {"database": (True, "answers")}


def instrument(
    app: web.Application,
    pool: asyncpg.Pool,
    live_streams: Callable[[], int],
    cfg: MetricsSection,
) -> MetricsServer | None:
    """Count the app's requests; the metrics server to run (None when metrics are off)."""
    telemetry = ReviewTelemetry(pool, live_streams)
    app.middlewares.insert(0, telemetry.middleware)
    if not cfg.enabled:
        return None
    return MetricsServer(cfg, "review", telemetry.registry, telemetry.checks)
