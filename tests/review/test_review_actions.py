"""The clerk's actions against a real PostgreSQL: revisions append-only, shown = raw + revisions,
each action's validation (a clear error, nothing written), revision numbers against stale
edits, and the same figures on TimescaleDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest
from review_support import SHIFT, WINDOW, at, seed

from gateway.config import ReviewSection
from gateway.review import actions
from gateway.review.errors import Conflict, Forbidden, Invalid, Locked, NotFound
from gateway.review.queue import review_queue
from gateway.review.users import Actor
from rules.config import ReasonConfig

pytestmark = pytest.mark.integration

CLERK = Actor("clerk1", "clerk", "cli")
BOSS = Actor("boss", "supervisor", "api")
VIEWER = Actor("eve", "viewer", "api")
CATALOG = [
    ReasonConfig(code="17", text="jam"),
    ReasonConfig(code="30", text="cleaning", planned=True),
]


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    await seed(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def revisions(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM revisions"))


async def op(conn: asyncpg.Connection, order: str, machine: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM order_operations_shown(p_order => $1) WHERE machine = $2", order, machine
    )
    assert row is not None
    return row


async def oee(
    conn: asyncpg.Connection, by: str = "order"
) -> dict[tuple[str, str], tuple[int, int]]:
    fn = {"order": "oee_by_order", "shift": "oee_by_shift"}[by]
    key = "order_id" if by == "order" else "shift_id"
    rows = await conn.fetch(f"SELECT * FROM {fn}()")
    return {(r["machine"], r[key]): (r["good"], r["reject"]) for r in rows if r[key]}


# --- append-only ------------------------------------------------------------------------------


async def test_revisions_refuse_update_delete_and_truncate(db: asyncpg.Connection) -> None:
    await actions.adjust(
        db, CLERK, order_id="o-1", machine="m1", figure="scrap", value=25, reason="recount"
    )
    for sql in (
        "UPDATE revisions SET reason = 'x'",
        "DELETE FROM revisions",
        "TRUNCATE revisions",
    ):
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await db.execute(sql)
    assert await revisions(db) == 1
    # The export ledger is append-only as well.
    await db.execute(
        "INSERT INTO export_runs (user_name, source, selection, format, lines, sha256)"
        " VALUES ('clerk1', 'cli', '{}', 'csv', 0, repeat('0', 64))"
    )
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await db.execute("DELETE FROM export_runs")


async def test_the_placeholder_table_of_0001_is_kept_when_it_has_rows(pg_dsn: str) -> None:
    from review_support import store

    from gateway.store import migrate
    from gateway.store.migrate import load_migrations

    conn = await asyncpg.connect(pg_dsn)
    try:
        for m in load_migrations("plain"):
            if m.version > "0008":
                break
            await conn.execute(m.sql)
        await conn.execute(
            "INSERT INTO revisions (author, entity, entity_id, action, reason)"
            " VALUES ('x', 'count', '1', 'adjust', 'by hand')"
        )
        await conn.execute(
            "CREATE TABLE schema_migrations (version text PRIMARY KEY, name text NOT NULL,"
            " flavor text NOT NULL, file text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in load_migrations("plain"):
            if m.version <= "0008":
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, flavor, file, checksum)"
                    " VALUES ($1, $2, 'plain', $3, $4)",
                    m.version,
                    m.name,
                    m.file,
                    m.checksum,
                )
        result = await migrate(store(pg_dsn, timescaledb="off"))
        assert "0009_revisions.sql" in result.applied
        assert await conn.fetchval("SELECT author FROM revisions_0001") == "x"
        assert await conn.fetchval("SELECT count(*) FROM revisions") == 0
    finally:
        await conn.close()


# --- shown = raw + revisions ------------------------------------------------------------------


async def test_totals_are_raw_plus_revisions_in_figures_and_reports(
    db: asyncpg.Connection,
) -> None:
    before = await oee(db)
    assert before[("m1", "o-1")] == (980, 20)

    await actions.adjust(
        db, CLERK, order_id="o-1", machine="m1", figure="good", delta=-30, reason="scrapped late"
    )
    await actions.adjust(
        db, CLERK, order_id="o-1", machine="m1", figure="scrap", value=50, reason="scrapped late"
    )
    await actions.adjust(
        db,
        CLERK,
        order_id="o-1",
        machine="m2",
        figure="good",
        delta=15,
        shift_id=SHIFT,
        reason="hand count at shift end",
    )
    await actions.decide_held(
        db, CLERK, held_id="m1-good-1", accept=True, parts=20, reason="20 were real"
    )
    await actions.move(
        db,
        CLERK,
        order_id="o-2",
        machine="m1",
        to_order="o-1",
        figure="good",
        parts=12,
        reason="booked on the wrong order",
    )

    m1 = await op(db, "o-1", "m1")
    assert (m1["recorded_good"], m1["recorded_scrap"]) == (980, 20)  # raw untouched
    assert (m1["good"], m1["scrap"]) == (980 - 30 + 20 + 12, 50)
    assert (m1["held_pending"], m1["revision"]) == (0, 3)
    m2 = await op(db, "o-1", "m2")
    assert m2["good"] == 975
    o2 = await op(db, "o-2", "m1")
    assert o2["good"] == 472 - 12
    assert await db.fetchval("SELECT sum(good) FROM counts") == 980 + 472 + 960

    # Reports read the same definition: OEE by order and by shift.
    after = await oee(db)
    assert after[("m1", "o-1")] == (982, 50)
    assert after[("m2", "o-1")] == (975, 0)
    assert after[("m1", "o-2")] == (460, 8)
    by_shift = await oee(db, "shift")
    # Order-level corrections have no shift; the shift's own and the held count's have.
    assert by_shift[("m2", SHIFT)] == (975, 0)
    assert by_shift[("m1", SHIFT)] == (980 + 472 + 20, 28)
    shifts = {
        (r["machine"], r["shift_id"]): (r["good"], r["revision"])
        for r in await db.fetch("SELECT * FROM order_shifts_shown('o-1')")
    }
    assert shifts[("m2", SHIFT)] == (975, 1)
    assert shifts[("m1", SHIFT)] == (1000, 0)


async def test_a_windowed_report_places_corrections_at_their_target(
    db: asyncpg.Connection,
) -> None:
    await actions.adjust(
        db, CLERK, order_id="o-2", machine="m1", figure="good", value=500, reason="recount"
    )
    rows = await db.fetch(
        "SELECT hour, good FROM oee_by_machine_hour($1, $2) WHERE machine = 'm1' ORDER BY hour",
        at(9),
        at(12),
    )
    # o-2 starts at 10:00 on m1: its correction (+28) counts in that hour.
    assert [(r["hour"], r["good"]) for r in rows] == [(at(9), 245), (at(10), 146), (at(11), 118)]
    # The corrected parts were made at the operation's ideal cycle time (10 s, from its count
    # records: the order itself names none), so performance stays known.
    row = await db.fetchrow(
        "SELECT produced, ideal_s, performance FROM oee_by_order()"
        " WHERE machine = 'm1' AND order_id = 'o-2'"
    )
    assert (row["produced"], row["ideal_s"]) == (508, 5080)
    assert row["performance"] is not None and round(row["performance"], 4) == round(
        Decimal(5080) / Decimal(14400), 4
    )


# --- validation -------------------------------------------------------------------------------


async def test_every_refusal_writes_nothing(db: asyncpg.Connection) -> None:
    cases = [
        (
            NotFound,
            "no order 'o-9'",
            actions.adjust(
                db, CLERK, order_id="o-9", machine="m1", figure="good", value=1, reason="x"
            ),
        ),
        (
            NotFound,
            "did not run on 'm7'",
            actions.adjust(
                db, CLERK, order_id="o-1", machine="m7", figure="good", value=1, reason="x"
            ),
        ),
        (
            Invalid,
            "would be -1",
            actions.adjust(
                db, CLERK, order_id="o-1", machine="m1", figure="scrap", delta=-21, reason="x"
            ),
        ),
        (
            Invalid,
            "a reason is required",
            actions.adjust(
                db, CLERK, order_id="o-1", machine="m1", figure="good", value=1, reason="  "
            ),
        ),
        (
            Invalid,
            "figure 'yield'",
            actions.adjust(
                db, CLERK, order_id="o-1", machine="m1", figure="yield", value=1, reason="x"
            ),
        ),
        (
            Invalid,
            "several machines",
            actions.adjust(
                db, CLERK, order_id="o-1", machine=None, figure="good", value=1, reason="x"
            ),
        ),
        (
            NotFound,
            "no shift 'nope'",
            actions.adjust(
                db,
                CLERK,
                order_id="o-1",
                machine="m1",
                figure="good",
                value=1,
                shift_id="nope",
                reason="x",
            ),
        ),
        (
            Forbidden,
            "eve is viewer",
            actions.adjust(
                db, VIEWER, order_id="o-1", machine="m1", figure="good", value=1, reason="x"
            ),
        ),
        (
            Invalid,
            "cannot move 500",
            actions.move(
                db,
                CLERK,
                order_id="o-2",
                machine="m1",
                to_order="o-1",
                figure="good",
                parts=500,
                reason="x",
            ),
        ),
        (
            NotFound,
            "no held count",
            actions.decide_held(db, CLERK, held_id="nope", accept=False, reason="x"),
        ),
        (
            Invalid,
            "accept 1 to 400, not 401",
            actions.decide_held(db, CLERK, held_id="m1-good-1", accept=True, parts=401, reason="x"),
        ),
        (
            Invalid,
            "not in the catalog",
            actions.recode(db, CLERK, downtime_id="m1-d1", code="99", catalog=CATALOG, reason="x"),
        ),
        (
            NotFound,
            "no downtime",
            actions.recode(db, CLERK, downtime_id="m9-x", code="17", catalog=CATALOG, reason="x"),
        ),
        (
            Invalid,
            "not inside downtime",
            actions.split(db, CLERK, downtime_id="m1-d1", at=at(7, 20), reason="x"),
        ),
        (
            NotFound,
            "no downtime 'm1-d9'",
            actions.merge(db, CLERK, downtime_id="m1-d1", with_id="m1-d9", reason="x"),
        ),
        (
            Invalid,
            "held counts",
            actions.confirm(db, CLERK, order_id="o-1", machine="m1"),
        ),
        (
            Invalid,
            "not confirmed",
            actions.reopen(db, BOSS, order_id="o-1", reason="x"),
        ),
        (
            Forbidden,
            "needs the role supervisor",
            actions.reopen(db, CLERK, order_id="o-1", reason="x"),
        ),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            await call
    assert await revisions(db) == 0


async def test_a_confirmed_order_is_locked_until_a_supervisor_reopens_it(
    db: asyncpg.Connection,
) -> None:
    change = await actions.confirm(db, CLERK, order_id="o-2")
    assert [r["new"] for r in change.revisions] == ["confirmed"]
    assert (await op(db, "o-2", "m1"))["status"] == "confirmed"
    written = await revisions(db)
    with pytest.raises(Locked, match="confirmed"):
        await actions.adjust(
            db, CLERK, order_id="o-2", machine="m1", figure="good", value=480, reason="x"
        )
    with pytest.raises(Locked):
        await actions.move(
            db,
            CLERK,
            order_id="o-1",
            machine="m1",
            to_order="o-2",
            figure="good",
            parts=1,
            reason="x",
        )
    with pytest.raises(Invalid, match="confirmed already"):
        await actions.confirm(db, CLERK, order_id="o-2")
    with pytest.raises(Invalid, match="a reason is required"):
        await actions.reopen(db, BOSS, order_id="o-2", reason=None)
    assert await revisions(db) == written

    await actions.reopen(db, BOSS, order_id="o-2", reason="customer recount")
    assert (await op(db, "o-2", "m1"))["status"] == "completed"
    await actions.adjust(
        db, CLERK, order_id="o-2", machine="m1", figure="good", value=480, reason="recount"
    )
    # A running order cannot be confirmed; the held count of o-1 must be decided first.
    await actions.decide_held(db, CLERK, held_id="m1-good-1", accept=False, reason="glitch")
    change = await actions.confirm(db, CLERK, order_id="o-1")
    assert len(change.revisions) == 2  # both machines
    held = await db.fetchrow("SELECT decision, accepted FROM held_counts_shown")
    assert tuple(held) == ("rejected", 0)
    with pytest.raises(Locked):
        await actions.decide_held(db, CLERK, held_id="m1-good-1", accept=True, reason="x")


async def test_a_stale_revision_number_is_a_conflict(db: asyncpg.Connection) -> None:
    seen = (await op(db, "o-1", "m2"))["revision"]
    assert seen == 0
    await actions.adjust(
        db,
        CLERK,
        order_id="o-1",
        machine="m2",
        figure="good",
        value=1000,
        reason="count",
        expected_revision=seen,
    )
    with pytest.raises(Conflict, match="at revision 1, the edit was based on revision 0"):
        await actions.adjust(
            db,
            BOSS,
            order_id="o-1",
            machine="m2",
            figure="good",
            value=990,
            reason="count",
            expected_revision=seen,
        )
    assert (await op(db, "o-1", "m2"))["good"] == 1000
    assert await revisions(db) == 1


async def test_simultaneous_edits_one_wins(pg_dsn: str, db: asyncpg.Connection) -> None:
    import asyncio

    other = await asyncpg.connect(pg_dsn)
    try:
        results = await asyncio.gather(
            actions.adjust(
                db,
                CLERK,
                order_id="o-1",
                machine="m2",
                figure="good",
                value=970,
                reason="a",
                expected_revision=0,
            ),
            actions.adjust(
                other,
                BOSS,
                order_id="o-1",
                machine="m2",
                figure="good",
                value=990,
                reason="b",
                expected_revision=0,
            ),
            return_exceptions=True,
        )
    finally:
        await other.close()
    assert sorted(type(r).__name__ for r in results) == ["Change", "Conflict"]
    assert await revisions(db) == 1


# --- downtimes --------------------------------------------------------------------------------


async def test_recode_split_and_merge_keep_lineage(db: asyncpg.Connection) -> None:
    await actions.recode(
        db, CLERK, downtime_id="m1-d1", code="17", catalog=CATALOG, reason="operator says jam"
    )
    with pytest.raises(Invalid, match="has reason 17 already"):
        await actions.recode(db, CLERK, downtime_id="m1-d1", code="17", catalog=CATALOG, reason="x")
    change = await actions.split(
        db,
        CLERK,
        downtime_id="m1-d1",
        at=at(7, 5),
        reason="jam cleared, then cleaning",
        expected_revision=1,
    )
    assert [r["target_key"] for r in change.revisions] == ['["m1-d1"]', '["m1-d1~1"]']
    await actions.recode(
        db, CLERK, downtime_id="m1-d1~1", code="30", catalog=CATALOG, reason="cleaning"
    )
    shown = await db.fetch(
        "SELECT downtime_id, lineage, start_ts, end_ts, reason_code, planned, source"
        " FROM downtimes_shown WHERE machine = 'm1' ORDER BY start_ts"
    )
    assert [tuple(r) for r in shown] == [
        ("m1-d1", "m1-d1", at(7), at(7, 5), "17", False, "clerk"),
        ("m1-d1~1", "m1-d1", at(7, 5), at(7, 20), "30", True, "clerk"),
        ("m1-d2", "m1-d2", at(7, 30), at(7, 31), None, False, "auto"),
    ]
    # The recorded row is what the gateway stored.
    raw = await db.fetchrow("SELECT end_ts, reason_code FROM downtimes WHERE downtime_id = 'm1-d1'")
    assert tuple(raw) == (at(7, 20), None)

    with pytest.raises(Invalid, match="cannot be merged with itself"):
        await actions.merge(db, CLERK, downtime_id="m1-d1", with_id="m1-d1", reason="x")
    await actions.merge(db, CLERK, downtime_id="m1-d1~1", with_id="m1-d2", reason="one stop")
    shown = await db.fetch(
        "SELECT downtime_id, start_ts, end_ts FROM downtimes_shown"
        " WHERE machine = 'm1' ORDER BY start_ts"
    )
    assert [tuple(r) for r in shown] == [
        ("m1-d1", at(7), at(7, 5)),
        ("m1-d1~1", at(7, 5), at(7, 31)),
    ]
    with pytest.raises(NotFound, match="merged into m1-d1~1"):
        await actions.recode(db, CLERK, downtime_id="m1-d2", code="17", catalog=CATALOG, reason="x")
    # Edits based on an old revision of the downtime are refused.
    with pytest.raises(Conflict, match="downtime m1-d1 is at revision 2"):
        await actions.merge(
            db, CLERK, downtime_id="m1-d1", with_id="m1-d1~1", reason="x", expected_revision=0
        )


async def test_merge_refuses_another_downtime_between(db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO downtimes (downtime_id, site, area, line, machine, start_ts, end_ts,"
        " order_id, shift_id) VALUES ('m1-d3', 's1', 'a1', 'l1', 'm1', $1, $2, 'o-1', $3)",
        at(7, 40),
        at(7, 45),
        SHIFT,
    )
    with pytest.raises(Invalid, match="m1-d2 lies between them"):
        await actions.merge(db, CLERK, downtime_id="m1-d1", with_id="m1-d3", reason="x")
    await db.execute("UPDATE downtimes SET order_id = 'o-2' WHERE downtime_id = 'm1-d3'")
    with pytest.raises(Invalid, match="same machine, order and shift"):
        await actions.merge(db, CLERK, downtime_id="m1-d2", with_id="m1-d3", reason="x")
    assert await revisions(db) == 0


# --- queue ------------------------------------------------------------------------------------


async def test_queue_entries_disappear_when_resolved(db: asyncpg.Connection) -> None:
    cfg = ReviewSection()

    async def kinds() -> list[str]:
        entries = await review_queue(db, cfg, start=WINDOW[0], end=WINDOW[1])
        return sorted(e["key"] for e in entries)

    first = await kinds()
    assert first == sorted(
        [
            "held:m1-good-1",
            "downtime:m1-d1",
            "flagged:s1:a1:l1:m1:cal-20250304-early:o-1:gap",
            "flagged:s1:a1:l1:m2:cal-20250304-early:o-1:gap",
            "quantity:o-1:s1:a1:l1:m2",
            "quantity:o-2:s1:a1:l1:m1",
            "no_order:s1:a1:l1:m1:cal-20250304-early",
            "link_down:s1:a1:l1:m2:cal-20250304-early",
        ]
    )
    entries = await review_queue(db, cfg, start=WINDOW[0], end=WINDOW[1], machine="m2")
    link = next(e for e in entries if e["kind"] == "link_down")
    assert (link["size"], link["detail"]["outages"], link["links"]) == (
        300.0,
        1,
        ["/api/v1/states?machine=m2&bucket=unknown&shift=cal-20250304-early"],
    )

    await actions.decide_held(db, CLERK, held_id="m1-good-1", accept=False, reason="glitch")
    await actions.recode(db, CLERK, downtime_id="m1-d1", code="17", catalog=CATALOG, reason="x")
    await actions.adjust(
        db, CLERK, order_id="o-1", machine="m2", figure="good", delta=40, reason="hand count"
    )
    await actions.confirm(db, CLERK, order_id="o-2")
    await actions.acknowledge(
        db,
        CLERK,
        entry="link_down:s1:a1:l1:m2:cal-20250304-early",
        fingerprint=1,
        reason="switch replaced",
    )
    assert await kinds() == [
        "flagged:s1:a1:l1:m1:cal-20250304-early:o-1:gap",
        "flagged:s1:a1:l1:m2:cal-20250304-early:o-1:gap",
        "no_order:s1:a1:l1:m1:cal-20250304-early",
    ]
    # An acknowledged entry comes back when its records change.
    await db.execute(
        "INSERT INTO state_intervals (site, area, line, machine, start_ts, end_ts, bucket, reason,"
        " order_id, shift_id) VALUES ('s1', 'a1', 'l1', 'm2', $1, $2, 'unknown', 'link down',"
        " 'o-1', $3)",
        at(9, 30),
        at(9, 31),
        SHIFT,
    )
    assert "link_down:s1:a1:l1:m2:cal-20250304-early" in await kinds()
    late = WINDOW[1] + timedelta(days=1)
    assert await review_queue(db, cfg, start=WINDOW[1], end=late) == []


async def test_a_total_that_is_not_good_plus_reject_is_queued(db: asyncpg.Connection) -> None:
    # Only a machine with all three counters can show it; the rules never make such a record.
    await db.execute(
        "INSERT INTO counts (event_id, site, area, line, machine, order_id, shift_id,"
        " interval_start, interval_end, good, reject, total)"
        " VALUES (gen_random_uuid(), 's1', 'a1', 'l1', 'm2', 'o-1', $1, $2, $3, 10, 1, 14)",
        SHIFT,
        at(9, 50),
        at(9, 51),
    )
    entries = await review_queue(db, ReviewSection(), start=WINDOW[0], end=WINDOW[1])
    (entry,) = [e for e in entries if e["kind"] == "mismatch"]
    assert (entry["key"], entry["size"], entry["detail"]["records"]) == (
        "mismatch:s1:a1:l1:m2:cal-20250304-early",
        3.0,
        1,
    )
    await actions.acknowledge(
        db, CLERK, entry=entry["key"], fingerprint=entry["fingerprint"], reason="total sensor"
    )
    entries = await review_queue(db, ReviewSection(), start=WINDOW[0], end=WINDOW[1])
    assert [e for e in entries if e["kind"] == "mismatch"] == []
