"""The review service's HTTP API against a real PostgreSQL: authentication, roles, actions
end to end, export, and the OpenAPI document kept in step with the router."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from review_support import SHIFT, WINDOW, at, seed

from gateway.config import ReviewSection, Settings, StoreSection
from gateway.review.api import API, ROUTES, build_app
from gateway.review.openapi import DOCUMENT, dumps, generate
from gateway.review.service import create_pool
from gateway.review.users import create_token
from rules.config import ReasonConfig

pytestmark = pytest.mark.integration


@dataclass
class Api:
    client: TestClient[Any, Any]
    tokens: dict[str, str]
    db: asyncpg.Connection

    async def call(
        self, method: str, path: str, user: str | None = "clerk1", **kw: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        async with self.client.request(method, API + path, headers=headers, **kw) as r:
            body = await r.read()
            kind = r.content_type
            return r.status, json.loads(body) if kind == "application/json" else body


@pytest.fixture
async def api(pg_dsn: str) -> AsyncIterator[Api]:
    await seed(pg_dsn)
    settings = Settings(
        store=StoreSection(dsn=SecretStr(pg_dsn), pool_size=2),
        review=ReviewSection(port=0),
        reasons=[ReasonConfig(code="17", text="jam")],
    )
    db = await asyncpg.connect(pg_dsn)
    tokens = {name: await create_token(db, name) for name in ("clerk1", "boss", "eve")}
    pool = await create_pool(settings.store)
    client = TestClient(TestServer(build_app(settings, pool)))
    await client.start_server()
    try:
        yield Api(client, tokens, db)
    finally:
        await client.close()
        await pool.close()
        await db.close()


async def test_every_route_but_the_document_requires_a_valid_token(api: Api) -> None:
    status, body = await api.call("GET", "/queue", user=None)
    assert (status, body["kind"]) == (401, "Unauthenticated")
    for bad in ("Bearer nonsense", "Basic abc", f"Bearer {api.tokens['eve'][:-2]}xx"):
        async with api.client.get(API + "/me", headers={"Authorization": bad}) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    for route in ROUTES:
        if route.role is None:
            continue
        path = route.path.format(order_id="o-1", held_id="h", downtime_id="d")
        status, _ = await api.call(route.method, path, user=None)
        assert status == 401, route
    status, doc = await api.call("GET", "/openapi.json", user=None)
    assert status == 200 and doc["openapi"] == "3.1.0"
    status, me = await api.call("GET", "/me", user="eve")
    assert (status, me) == (200, {"user": "eve", "role": "viewer", "via": "token"})


async def test_roles_decide_what_a_user_may_do(api: Api) -> None:
    body = {
        "figure": "good",
        "value": 970,
        "machine": "m2",
        "reason": "count",
        "expected_revision": 0,
    }
    status, err = await api.call("POST", "/orders/o-1/adjust", user="eve", json=body)
    assert (status, err["kind"]) == (403, "Forbidden")
    status, _ = await api.call("GET", "/orders/o-1", user="eve")
    assert status == 200
    status, change = await api.call("POST", "/orders/o-1/adjust", json=body)
    assert status == 201
    assert change["revisions"][0]["user"] == "clerk1"
    assert change["revisions"][0]["source"] == "api"
    await api.call(
        "POST", "/held-counts/m1-good-1/reject", json={"reason": "glitch", "expected_revision": 0}
    )
    status, _ = await api.call("POST", "/orders/o-1/confirm", json={})
    assert status == 201
    status, err = await api.call("POST", "/orders/o-1/reopen", json={"reason": "QA"})
    assert (status, err["kind"]) == (403, "Forbidden")
    status, change = await api.call(
        "POST", "/orders/o-1/reopen", user="boss", json={"reason": "QA"}
    )
    assert status == 201 and {r["user"] for r in change["revisions"]} == {"boss"}
    assert await api.db.fetchval("SELECT count(DISTINCT user_name) FROM revisions") == 2


async def test_actions_end_to_end_with_conflicts_and_validation(api: Api) -> None:
    status, detail = await api.call("GET", "/orders/o-1")
    m2 = next(o for o in detail["operations"] if o["machine"] == "m2")
    assert (m2["good"], m2["revision"]) == (960, 0)
    body = {
        "figure": "good",
        "delta": 40,
        "machine": "m2",
        "shift": SHIFT,
        "reason": "hand count",
        "expected_revision": 0,
    }
    status, change = await api.call("POST", "/orders/o-1/adjust", json=body)
    assert status == 201
    jsonschema.validate(change, generate()["components"]["schemas"]["Change"])
    status, err = await api.call("POST", "/orders/o-1/adjust", user="boss", json=body)
    assert (status, err["kind"]) == (409, "Conflict")
    assert "revision 1" in err["error"]

    written = await api.db.fetchval("SELECT count(*) FROM revisions")
    bad = [
        ("/orders/o-1/adjust", {**body, "expected_revision": 1, "reason": ""}, 422),
        ("/orders/o-1/adjust", {**body, "expected_revision": 1, "delta": -2000}, 422),
        ("/orders/o-1/adjust", {**body, "colour": "red"}, 422),
        ("/orders/o-1/adjust", {"figure": "good"}, 422),
        ("/orders/o-7/adjust", {**body, "expected_revision": 0}, 404),
        (
            "/held-counts/m1-good-1/accept",
            {"parts": 500, "reason": "x", "expected_revision": 0},
            422,
        ),
        ("/downtimes/m1-d1/reason", {"code": "99", "reason": "x", "expected_revision": 0}, 422),
        (
            "/downtimes/m1-d1/split",
            {"at": at(8).isoformat(), "reason": "x", "expected_revision": 0},
            422,
        ),
        ("/queue/acknowledge", {"key": "nope", "reason": "x"}, 404),
    ]
    for path, payload, want in bad:
        status, err = await api.call("POST", path, json=payload)
        assert status == want, (path, payload, err)
        assert err["error"]
    async with api.client.post(
        API + "/orders/o-1/confirm",
        data="{}",
        headers={"Authorization": f"Bearer {api.tokens['clerk1']}"},
    ) as r:
        assert r.status == 422  # not declared as JSON
    assert await api.db.fetchval("SELECT count(*) FROM revisions") == written

    status, _ = await api.call(
        "POST",
        "/downtimes/m1-d1/reason",
        json={"code": "17", "reason": "jam", "expected_revision": 0},
    )
    assert status == 201
    status, _ = await api.call(
        "POST",
        "/downtimes/m1-d1/split",
        json={"at": at(7, 10).isoformat(), "reason": "two stops", "expected_revision": 1},
    )
    assert status == 201
    status, piece = await api.call("GET", "/downtimes/m1-d1~1")
    assert (status, piece["lineage"], piece["reason_code"]) == (200, "m1-d1", "17")
    status, queue = await api.call(
        "GET", "/queue", params={"from": WINDOW[0].isoformat(), "to": WINDOW[1].isoformat()}
    )
    keys = {e["key"] for e in queue["entries"]}
    assert "downtime:m1-d1" not in keys and "held:m1-good-1" in keys
    key = "link_down:s1:a1:l1:m2:cal-20250304-early"
    status, _ = await api.call(
        "POST",
        "/queue/acknowledge",
        json={
            "key": key,
            "reason": "switch swapped",
            "from": WINDOW[0].isoformat(),
            "to": WINDOW[1].isoformat(),
        },
    )
    assert status == 201
    status, queue = await api.call(
        "GET", "/queue", params={"from": WINDOW[0].isoformat(), "to": WINDOW[1].isoformat()}
    )
    assert key not in {e["key"] for e in queue["entries"]}
    status, revs = await api.call("GET", "/revisions", params={"downtime": "m1-d1"})
    assert [r["field"] for r in revs["revisions"]] == ["end", "reason"]


async def test_export_check_then_record_through_the_api(api: Api) -> None:
    status, content = await api.call(
        "GET", "/export/confirmations", user="eve", params={"order": "o-2"}
    )
    assert status == 200 and content.startswith(b"record_type;")
    assert await api.db.fetchval("SELECT count(*) FROM export_runs") == 0
    status, _ = await api.call("POST", "/export/confirmations", user="eve", json={"order": "o-2"})
    assert status == 403
    status, first = await api.call(
        "POST", "/export/confirmations", json={"order": "o-2", "format": "json"}
    )
    assert status == 200 and [x["counter"] for x in first["lines"]] == [1]
    status, again = await api.call(
        "POST", "/export/confirmations", json={"order": "o-2", "format": "json"}
    )
    assert again == first
    assert await api.db.fetchval("SELECT count(*) FROM export_lines") == 1


def test_the_openapi_document_is_in_step_with_the_code() -> None:
    committed = DOCUMENT.read_text()
    assert committed == dumps(generate()), (
        "gateway/review/openapi.json is stale: run `python -m gateway.review.openapi`"
    )
    doc = json.loads(committed)
    jsonschema.Draft202012Validator.check_schema(doc["components"]["schemas"]["AdjustBody"])
    routes = {(r.method.lower(), API + r.path) for r in ROUTES}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == routes


async def test_the_router_serves_exactly_the_documented_routes(api: Api) -> None:
    doc = json.loads(DOCUMENT.read_text())
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in api.client.server.app.router.routes()  # type: ignore[union-attr]
        if route.resource is not None and route.method != "HEAD"
    }
    assert served == {(m, p) for p, ops in doc["paths"].items() for m in ops}
