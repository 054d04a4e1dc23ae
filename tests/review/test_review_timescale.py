"""The clerk's loop on TimescaleDB (PGlite harness) gives what it gives on plain PostgreSQL.

PGlite serves one connection at a time: each step opens, uses and closes its own.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import asyncpg
import pytest
from review_support import SHIFT, WINDOW, at, seed

from gateway.config import ReviewExportSection, ReviewSection
from gateway.review import actions
from gateway.review.export import Selection, export_confirmations
from gateway.review.queue import review_queue
from gateway.review.users import Actor
from rules.config import ReasonConfig

pytestmark = pytest.mark.integration

CLERK = Actor("clerk1", "clerk", "cli")
CATALOG = [ReasonConfig(code="17", text="jam")]


async def loop_through(dsn: str, timescaledb: str) -> dict[str, Any]:
    await seed(dsn, timescaledb=timescaledb)
    conn = await asyncpg.connect(dsn)
    try:
        flavour = await conn.fetchval("SELECT flavor FROM schema_migrations LIMIT 1")
        await actions.adjust(
            conn, CLERK, order_id="o-1", machine="m1", figure="scrap", delta=5, reason="QA"
        )
        await actions.adjust(
            conn,
            CLERK,
            order_id="o-1",
            machine="m2",
            figure="good",
            value=1000,
            shift_id=SHIFT,
            reason="hand count",
        )
        await actions.decide_held(
            conn, CLERK, held_id="m1-good-1", accept=True, parts=30, reason="real"
        )
        await actions.recode(
            conn, CLERK, downtime_id="m1-d1", code="17", catalog=CATALOG, reason="jam"
        )
        await actions.split(conn, CLERK, downtime_id="m1-d1", at=at(7, 10), reason="two")
        await actions.move(
            conn,
            CLERK,
            order_id="o-2",
            machine="m1",
            to_order="o-1",
            figure="good",
            parts=3,
            reason="wrong order",
        )
        await actions.confirm(conn, CLERK, order_id="o-1")
        figures = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT order_id, machine, good, scrap, rework, status, revision"
                " FROM order_operations_shown() ORDER BY 1, 2"
            )
        ]
        oee = [
            (r["machine"], r["order_id"], r["produced"], r["good"], str(r["oee"]))
            for r in await conn.fetch("SELECT * FROM oee_by_order() ORDER BY machine, order_id")
        ]
        hourly = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT machine, hour, good, reject FROM oee_by_machine_hour($1, $2)"
                " ORDER BY machine, hour",
                *WINDOW,
            )
        ]
        downtimes = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT downtime_id, lineage, start_ts, end_ts, reason_code FROM downtimes_shown"
                " ORDER BY downtime_id"
            )
        ]
        queue = [
            (e["kind"], e["key"], e["size"])
            for e in await review_queue(conn, ReviewSection(), start=WINDOW[0], end=WINDOW[1])
        ]
        out = await export_confirmations(
            conn,
            CLERK,
            Selection(start=WINDOW[0], end=WINDOW[1]),
            fmt="json",
            cfg=ReviewExportSection(),
            today=date(2025, 3, 5),
        )
        return {
            "flavour": flavour,
            "figures": figures,
            "oee": oee,
            "hourly": hourly,
            "downtimes": downtimes,
            "queue": queue,
            "export": json.loads(out.content),
        }
    finally:
        await conn.close()


async def test_same_results_on_plain_postgresql_and_timescaledb(
    pg_dsn: str, timescale_dsn: str
) -> None:
    plain = await loop_through(pg_dsn, "off")
    timescale = await loop_through(timescale_dsn, "on")
    assert (plain.pop("flavour"), timescale.pop("flavour")) == ("plain", "timescaledb")
    assert timescale == plain
    assert ("o-1", "m1", 980 + 30 + 3, 25, 0, "confirmed", 3) in plain["figures"]
    assert [x["yield"] for x in plain["export"]["lines"]] == [1013, 1000, 469]
