"""The work-order HTTP API over real HTTP: commands, list, schedule import, every error as JSON."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from orders_support import MemoryDesk, settings_for

from gateway.config import ApiSection
from gateway.orders.http import MAX_BODY, ApiError, OrderApi

TOKEN = "t0ken-for-the-order-api"
CSV = (
    "order_id,product,quantity,ideal_cycle_time_s,machine\n"
    "WO-7,Cap,500,1.5,capper-1\n"
    "WO-8,Cap,9,,\n"
)


@asynccontextmanager
async def serving(desk: MemoryDesk, **api: Any) -> AsyncIterator[OrderApi]:
    settings = settings_for(api=ApiSection(port=0, **api))
    server = OrderApi(settings, desk)
    task = asyncio.create_task(server.run(), name="orders-api")
    try:
        assert await server.wait_started(5), "API did not start"
        yield server
    finally:
        await server.stop()
        await task


@pytest.fixture
async def api(desk: MemoryDesk) -> AsyncIterator[str]:
    async with serving(desk) as server:
        yield server.url


async def call(
    method: str,
    url: str,
    *,
    json: Any = None,
    data: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=json, data=data, headers=headers) as resp,
    ):
        assert resp.content_type == "application/json"
        return resp.status, await resp.json(), resp.headers


def start_url(base: str, machine: str = "filler-1") -> str:
    return f"{base}/api/v1/machines/{machine}/order/start"


def stop_url(base: str, machine: str = "filler-1") -> str:
    return f"{base}/api/v1/machines/{machine}/order/stop"


async def test_start_stop_lifecycle(api: str, desk: MemoryDesk) -> None:
    status, body, _ = await call(
        "POST", start_url(api), json={"order_id": "WO-1", "quantity": 50, "request_id": "h-1"}
    )
    assert status == 200
    assert body == {
        "ok": True,
        "machine": "filler-1",
        "order_id": "WO-1",
        "status": "running",
        "error": None,
        "request_id": "h-1",
    }
    status, body, _ = await call("POST", start_url(api), json={"order_id": "WO-1"})
    assert (status, body["ok"]) == (200, True)  # idempotent
    status, body, _ = await call("POST", start_url(api), json={"order_id": "WO-2"})
    assert (status, body["error"]) == (409, "order WO-1 is running; stop it first")
    status, body, _ = await call("POST", stop_url(api), json={"order_id": "WO-9"})
    assert (status, body["error"]) == (409, "order WO-9 is not running (WO-1 is)")
    status, body, _ = await call("POST", stop_url(api), json={})
    assert (status, body["order_id"], body["status"]) == (200, "WO-1", "completed")
    empty = {"Content-Type": "application/json"}
    status, body, _ = await call("POST", stop_url(api), data=b"", headers=empty)
    assert (status, body["error"]) == (409, "no order is running on filler-1")
    assert [(c.action, c.order_id, c.origin) for c in desk.commands] == [
        ("start", "WO-1", "http"),
        ("start", "WO-1", "http"),
        ("start", "WO-2", "http"),
        ("stop", "WO-9", "http"),
        ("stop", None, "http"),
        ("stop", None, "http"),
    ]
    assert desk.commands[0].quantity == 50


async def test_cli_header_marks_the_origin(api: str, desk: MemoryDesk) -> None:
    headers = {"X-Mesgw-Client": "cli"}
    await call("POST", start_url(api), json={"order_id": "WO-1"}, headers=headers)
    assert desk.commands[0].origin == "cli"


async def test_list_and_import(api: str, desk: MemoryDesk) -> None:
    await call("POST", start_url(api), json={"order_id": "WO-1", "product": "Bottle"})
    headers = {"Content-Type": "text/csv"}
    status, body, _ = await call("POST", f"{api}/api/v1/orders/import", data=CSV, headers=headers)
    assert (status, body) == (200, {"ok": True, "planned": 2})
    status, body, _ = await call("GET", f"{api}/api/v1/orders")
    assert status == 200
    assert body["orders"] == [
        {
            "machine": "filler-1",
            "order_id": "WO-1",
            "status": "running",
            "product": "Bottle",
            "quantity": None,
        },
        {
            "machine": "capper-1",
            "order_id": "WO-7",
            "status": "planned",
            "product": "Cap",
            "quantity": 500,
        },
        {"machine": None, "order_id": "WO-8", "status": "planned", "product": "Cap", "quantity": 9},
    ]


async def test_a_wrong_schedule_imports_nothing(api: str, desk: MemoryDesk) -> None:
    bad = CSV + "WO-9,Cap,lots,,\nWO-10,Cap,1,,press-9\n"
    headers = {"Content-Type": "text/csv; charset=utf-8"}
    status, body, _ = await call("POST", f"{api}/api/v1/orders/import", data=bad, headers=headers)
    assert status == 422
    assert body == {
        "ok": False,
        "error": "schedule refused, nothing imported: 2 problem(s)",
        "problems": [
            "line 4: quantity: 'lots' is not a whole number from 1 to 1,000,000,000,000",
            "line 5: machine: 'press-9' is not a machine of this gateway",
        ],
    }
    assert desk.planned == {}
    latin = CSV.replace("Cap", "Kappe grün").encode("latin-1")
    status, body, _ = await call("POST", f"{api}/api/v1/orders/import", data=latin, headers=headers)
    assert (status, body["problems"]) == (422, ["line 2: not UTF-8 text; save the CSV as UTF-8"])
    latin_headers = {"Content-Type": "text/csv; charset=latin-1"}
    status, body, _ = await call(
        "POST", f"{api}/api/v1/orders/import", data=latin, headers=latin_headers
    )
    assert (status, body["error"]) == (415, "charset latin-1 not supported: send the CSV as UTF-8")
    # The desk's own refusal: an order of the schedule has already started.
    await call("POST", start_url(api), json={"order_id": "WO-8"})
    status, body, _ = await call("POST", f"{api}/api/v1/orders/import", data=CSV, headers=headers)
    assert (status, body["error"]) == (
        409,
        "schedule refused, nothing imported: already started: WO-8",
    )
    assert desk.planned == {}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error"),
    [
        (
            "POST",
            "/api/v1/machines/press-9/order/start",
            {"json": {"order_id": "A", "request_id": "q"}},
            404,
            "unknown machine 'press-9' on this gateway",
        ),
        (
            "POST",
            "/api/v1/machines/filler-1/order/start",
            {"data": b"{nope", "headers": {"Content-Type": "application/json"}},
            400,
            "payload is not JSON",
        ),
        (
            "POST",
            "/api/v1/machines/filler-1/order/start",
            {"json": {"order_id": "A", "quantity": "many"}},
            422,
            "quantity: must be an integer",
        ),
        (
            "POST",
            "/api/v1/machines/filler-1/order/stop",
            {"data": b""},
            415,
            "Content-Type must be application/json",
        ),
        (
            "POST",
            "/api/v1/machines/filler-1/order/start",
            {"data": b'{"order_id": "A"}', "headers": {"Content-Type": "text/plain"}},
            415,
            "Content-Type must be application/json",
        ),
        (
            "POST",
            "/api/v1/orders/import",
            {"json": {"csv": "x"}},
            415,
            "Content-Type must be text/csv",
        ),
        ("GET", "/api/v1/nothing", {}, 404, "Not Found"),
        ("GET", "/api/v1/machines/filler-1/order/start", {}, 405, "Method Not Allowed"),
        (
            "POST",
            "/api/v1/orders/import",
            {"data": b"x" * (MAX_BODY + 1), "headers": {"Content-Type": "text/csv"}},
            413,
            f"request body too large (limit {MAX_BODY} bytes)",
        ),
    ],
)
async def test_errors_are_json_with_a_reason(
    api: str,
    desk: MemoryDesk,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    error: str,
) -> None:
    got, body, headers = await call(method, api + path, **kwargs)
    assert got == status
    assert body["ok"] is False
    assert body["error"].startswith(error)
    if status == 404 and "machines" in path:
        assert (body["machine"], body["request_id"]) == ("press-9", "q")
    if status == 405:
        assert headers["Allow"] == "POST"
    assert desk.commands == []


async def test_without_token_only_loopback_host_names_are_served(api: str) -> None:
    for host in ("localhost", "127.0.0.1", "[::1]"):
        status, _, _ = await call("GET", f"{api}/api/v1/orders", headers={"Host": host})
        assert status == 200, host
    status, body, _ = await call("GET", f"{api}/api/v1/orders", headers={"Host": "evil.example"})
    assert (status, body["error"]) == (
        403,
        "Host must be a loopback address (or configure api.token)",
    )


async def test_token_is_required_when_configured(desk: MemoryDesk) -> None:
    async with serving(desk, token=TOKEN) as server:
        url = f"{server.url}/api/v1/orders"
        status, body, headers = await call("GET", url)
        assert (status, body["error"]) == (401, "missing or wrong bearer token")
        assert headers["WWW-Authenticate"] == 'Bearer realm="mesgw"'
        status, _, _ = await call("GET", url, headers={"Authorization": "Bearer wrong-token"})
        assert status == 401
        status, _, _ = await call("GET", url, headers={"Authorization": TOKEN})
        assert status == 401
        good = {"Authorization": f"Bearer {TOKEN}", "Host": "gateway.plant.local"}
        status, body, _ = await call("GET", url, headers=good)
        assert (status, body) == (200, {"orders": []})
        status, _, _ = await call(
            "POST", start_url(server.url), json={"order_id": "WO-1"}, headers=good
        )
        assert status == 200


async def test_a_taken_port_is_a_clear_error(desk: MemoryDesk) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = OrderApi(settings_for(api=ApiSection(port=port)), desk)
        with pytest.raises(ApiError, match=f"api: cannot listen on 127.0.0.1:{port}: "):
            await server.run()


async def test_after_stop_nothing_listens(desk: MemoryDesk) -> None:
    async with serving(desk) as server:
        url = f"{server.url}/api/v1/orders"
        assert (await call("GET", url))[0] == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        await call("GET", url)
