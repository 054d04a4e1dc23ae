"""ERP export against a real PostgreSQL: byte-identical repeats, the ledger, deltas, check mode."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest
from review_support import WINDOW, seed

from gateway.config import ReviewExportSection
from gateway.review import actions
from gateway.review.errors import Forbidden, Invalid, NotFound
from gateway.review.export import Selection, export_confirmations
from gateway.review.users import Actor

pytestmark = pytest.mark.integration

CLERK = Actor("clerk1", "clerk", "cli")
VIEWER = Actor("eve", "viewer", "api")
DAY1, DAY2 = date(2025, 3, 5), date(2025, 3, 6)
CFG = ReviewExportSection(work_centres={"m1": "WC-FILL"}, operations={"m1": "0010"})


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    await seed(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await actions.decide_held(
            conn, CLERK, held_id="m1-good-1", accept=True, parts=20, reason="20 were real"
        )
        await actions.confirm(conn, CLERK, order_id="o-1")
        yield conn
    finally:
        await conn.close()


def rows(content: bytes, delimiter: str = ";") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8")), delimiter=delimiter))


async def test_confirmations_carry_the_shown_figures_and_times(db: asyncpg.Connection) -> None:
    out = await export_confirmations(
        db, CLERK, Selection(order="o-1"), fmt="csv", cfg=CFG, today=DAY1
    )
    assert out.problems == []
    got = rows(out.content)
    assert [
        (r["record_type"], r["operation"], r["work_centre"], r["yield"], r["scrap"]) for r in got
    ] == [
        ("confirmation", "0010", "WC-FILL", "1000", "20"),
        ("confirmation", "m2", "l1", "960", "0"),
    ]
    m1 = got[0]
    assert (m1["final"], m1["posting_date"], m1["counter"], m1["unit"]) == (
        "X",
        "2025-03-05",
        "1",
        "PCE",
    )
    assert (m1["execution_start"], m1["execution_finish"]) == (
        "2025-03-04T06:00:00Z",
        "2025-03-04T10:00:00Z",
    )
    # 4 h of o-1 on m1 with 21 min down (07:00-07:20 and the 1 min micro-stop).
    assert (m1["setup_s"], m1["down_s"], m1["run_s"]) == ("0.000", "1260.000", "13140.000")
    assert out.content.startswith(b"record_type;order;operation;machine;work_centre;yield;")
    assert await db.fetchval("SELECT count(*) FROM export_lines") == 2
    assert await db.fetchval("SELECT sha256 FROM export_runs") == out.sha256


async def test_a_second_export_is_byte_identical_and_records_nothing(
    db: asyncpg.Connection,
) -> None:
    for fmt in ("csv", "json"):
        first = await export_confirmations(
            db, CLERK, Selection(start=WINDOW[0], end=WINDOW[1]), fmt=fmt, cfg=CFG, today=DAY1
        )
        again = await export_confirmations(
            db, CLERK, Selection(start=WINDOW[0], end=WINDOW[1]), fmt=fmt, cfg=CFG, today=DAY2
        )
        assert again.content == first.content
        assert again.new == [] and again.run_id is None
    # o-2 (completed, not confirmed) is a partial confirmation; o-1 final on both machines.
    doc = json.loads(first.content)
    assert doc["schema"] == "mesgw.confirmations/1"
    assert [(x["order"], x["operation"], x["final"]) for x in doc["lines"]] == [
        ("o-1", "0010", True),
        ("o-1", "m2", True),
        ("o-2", "0010", False),
    ]
    assert await db.fetchval("SELECT count(*) FROM export_runs") == 1


async def test_a_late_correction_yields_exactly_its_delta(db: asyncpg.Connection) -> None:
    sel = Selection(order="o-1")
    first = await export_confirmations(db, CLERK, sel, fmt="csv", cfg=CFG, today=DAY1)
    boss = Actor("boss", "supervisor", "cli")
    await actions.reopen(db, boss, order_id="o-1", machine="m2", reason="recount by QA")
    await actions.adjust(
        db, CLERK, order_id="o-1", machine="m2", figure="scrap", value=7, reason="QA scrap"
    )
    await actions.adjust(
        db, CLERK, order_id="o-1", machine="m2", figure="good", delta=-7, reason="QA scrap"
    )
    # Reopened and not yet confirmed again: a delta, not final.
    check = await export_confirmations(db, CLERK, sel, fmt="csv", cfg=CFG, check=True, today=DAY2)
    assert [(r["record_type"], r["yield"], r["scrap"], r["final"]) for r in check.new] == [
        ("delta", -7, 7, False)
    ]
    assert await db.fetchval("SELECT count(*) FROM export_lines") == 2  # check records nothing
    await actions.confirm(db, CLERK, order_id="o-1", machine="m2")
    second = await export_confirmations(db, CLERK, sel, fmt="csv", cfg=CFG, today=DAY2)
    assert second.content.startswith(first.content)
    (delta,) = rows(second.content)[2:]
    assert (
        delta["record_type"],
        delta["operation"],
        delta["yield"],
        delta["scrap"],
        delta["rework"],
        delta["setup_s"],
        delta["run_s"],
        delta["down_s"],
        delta["final"],
        delta["counter"],
        delta["posting_date"],
        delta["variance_reason"],
    ) == (
        "delta",
        "m2",
        "-7",
        "7",
        "0",
        "0.000",
        "0.000",
        "0.000",
        "X",
        "2",
        "2025-03-06",
        "QA scrap",
    )
    third = await export_confirmations(db, CLERK, sel, fmt="csv", cfg=CFG, today=DAY2)
    assert third.content == second.content and third.new == []
    assert await db.fetchval("SELECT count(*) FROM export_lines") == 3


async def test_check_mode_decimal_comma_and_the_error_pool(pg_dsn: str) -> None:
    await seed(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        cfg = ReviewExportSection(delimiter=",", decimal_comma=True)
        out = await export_confirmations(
            conn, VIEWER, Selection(order="o-1"), fmt="csv", cfg=cfg, check=True, today=DAY1
        )
        # m1 has a held count waiting: no line for it, and it is listed.
        assert out.problems == ["order o-1 on m1: 1 held counts (400 parts) waiting for a decision"]
        (m2,) = rows(out.content, ",")
        assert (m2["machine"], m2["run_s"], m2["final"]) == ("s1/a1/l1/m2", "14100,000", "")
        assert b'"14100,000"' in out.content  # the decimal comma is quoted under ','
        with pytest.raises(Forbidden, match="exporting confirmations needs the role clerk"):
            await export_confirmations(
                conn, VIEWER, Selection(order="o-1"), fmt="csv", cfg=cfg, today=DAY1
            )
        with pytest.raises(NotFound, match="no order 'o-7'"):
            await export_confirmations(
                conn, CLERK, Selection(order="o-7"), fmt="csv", cfg=cfg, today=DAY1
            )
        with pytest.raises(Invalid, match="window"):
            await export_confirmations(conn, CLERK, Selection(), fmt="csv", cfg=cfg, today=DAY1)
        assert await conn.fetchval("SELECT count(*) FROM export_runs") == 0
    finally:
        await conn.close()
