"""gateway.metrics on an application of its own (as the review service will use it)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gateway.metrics import Checks, Live, add_routes, new_registry
from gateway.testing import free_port


async def test_add_routes_serves_metrics_health_and_readiness() -> None:
    registry = new_registry("review")
    from prometheus_client.core import CounterMetricFamily

    served = {"n": 0}
    registry.register(
        Live(lambda: [CounterMetricFamily("mesgw_review_pages", "pages", value=served["n"])])
    )
    database = {"ok": False}

    async def ready() -> Checks:
        return {"database": (database["ok"], "connected" if database["ok"] else "unreachable")}

    app = web.Application()
    add_routes(app, registry, ready)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            served["n"] = 3
            async with http.get("/metrics") as resp:
                text = await resp.text()
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
            assert "mesgw_review_pages_total 3.0" in text
            assert 'mesgw_build_info{component="review"' in text
            async with http.get("/healthz") as resp:
                assert resp.status == 200
            async with http.get("/readyz") as resp:
                assert resp.status == 503
                body = await resp.json()
                assert body == {
                    "ready": False,
                    "checks": {"database": {"ok": False, "detail": "unreachable"}},
                }
            database["ok"] = True
            async with http.get("/readyz") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
