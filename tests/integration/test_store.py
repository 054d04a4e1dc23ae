"""The store on a real PostgreSQL 15: migrations, the batch writer, retention, connections."""

from __future__ import annotations

import asyncio
import importlib
import json
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from gateway.config import StoreSection
from gateway.errors import MigrationError, StoreError
from gateway.events import Event, StateData, uuid7
from gateway.store import (
    DeadLetter,
    Received,
    connect,
    migrate,
    prune,
    write_batch,
    write_one_by_one,
)
from gateway.store.migrate import LOCK_KEY, MigrationResult, load_migrations
from gateway.testing import count_event as make_count_event
from gateway.testing import received

pytestmark = pytest.mark.integration

# `gateway.store.migrate` the attribute is the function; the module is needed to patch it.
migrate_module = importlib.import_module("gateway.store.migrate")

TABLES = {
    "events",
    "counts",
    "state_intervals",
    "downtimes",
    "work_orders",
    "shifts",
    "revisions",
    "exports",
    "dead_letters",
    "schema_migrations",
    "oee_settings",
    "planned_orders",
    "held_counts",
    "web_sessions",
    "users",
    "api_tokens",
    "export_runs",
    "export_lines",
}
PLAIN_FILES = [m.file for m in load_migrations("plain")]
# Migrations after 0007 are checked by their own tests; here they only have to follow in order.
LATER = [m for m in load_migrations("plain") if m.version > "0007"]
T0 = datetime(2025, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)


def store(dsn: str, **kw: Any) -> StoreSection:
    return StoreSection(dsn=SecretStr(dsn), **kw)


def count_event(
    i: int, *, ts: datetime = T0, machine: str = "m1", event_id: uuid.UUID | None = None
) -> Event:
    order = "o-1" if i % 2 else None
    return make_count_event(
        seq=i, ts=ts, machine=machine, event_id=event_id, good=i, order=order, shift="early"
    )


@pytest.fixture
async def migrated(pg_dsn: str) -> str:
    result = await migrate(store(pg_dsn, timescaledb="auto"))
    assert result.applied == PLAIN_FILES
    return pg_dsn


@pytest.fixture
async def conn(migrated: str) -> AsyncIterator[asyncpg.Connection]:
    c = await connect(store(migrated))
    try:
        yield c
    finally:
        await c.close()


# --- migrations ----------------------------------------------------------------------------


async def test_migrate_creates_the_contract_tables_and_is_idempotent(pg_dsn: str) -> None:
    cfg = store(pg_dsn, timescaledb="auto")  # the local server has no TimescaleDB
    first = await migrate(cfg)
    assert first.applied == [
        "0001_core.sql",
        "0002_timeseries.plain.sql",
        "0003_dead_letters_once.sql",
        "0004_typed_tables.sql",
        "0005_oee.sql",
        "0006_work_orders_per_machine.sql",
        "0007_downtime_loss.sql",
        *(m.file for m in LATER),
    ]
    assert first.timescaledb is False

    second = await migrate(cfg)
    assert second.applied == []
    assert second.timescaledb is False

    c = await asyncpg.connect(pg_dsn)
    try:
        tables = {
            r["table_name"]
            for r in await c.fetch(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        }
        rows = await c.fetch("SELECT version, flavor, file FROM schema_migrations ORDER BY 1")
        view = await c.fetchval(
            "SELECT table_type FROM information_schema.tables WHERE table_name = 'counts_hourly'"
        )
        pk = await c.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'events'::regclass AND contype = 'p'"
        )
    finally:
        await c.close()
    assert tables == TABLES
    assert [tuple(r) for r in rows] == [
        ("0001", "plain", "0001_core.sql"),
        ("0002", "plain", "0002_timeseries.plain.sql"),
        ("0003", "plain", "0003_dead_letters_once.sql"),
        ("0004", "plain", "0004_typed_tables.sql"),
        ("0005", "plain", "0005_oee.sql"),
        ("0006", "plain", "0006_work_orders_per_machine.sql"),
        ("0007", "plain", "0007_downtime_loss.sql"),
        *((m.version, "plain", m.file) for m in LATER),
    ]
    assert view == "VIEW"
    assert pk == "PRIMARY KEY (event_id, ts)"


async def test_two_concurrent_migrations_apply_each_file_once(pg_dsn: str) -> None:
    cfg = store(pg_dsn, timescaledb="off")
    a, b = await asyncio.gather(migrate(cfg), migrate(cfg))
    # One run applied everything; the other waited for the lock and found nothing to do.
    assert sorted([a.applied, b.applied]) == [[], PLAIN_FILES]
    c = await asyncpg.connect(pg_dsn)
    try:
        assert await c.fetchval("SELECT count(*) FROM schema_migrations") == len(PLAIN_FILES)
    finally:
        await c.close()


async def test_migrate_waits_for_the_lock_and_gives_up_with_a_clear_error(pg_dsn: str) -> None:
    holder = await asyncpg.connect(pg_dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        with pytest.raises(MigrationError, match="held the lock"):
            await migrate(store(pg_dsn), lock_timeout=0.3)
        assert await holder.fetchval("SELECT to_regclass('events')") is None
    finally:
        await holder.close()


def copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(Path(str(migrate_module.__file__)).parent / "migrations", target)
    return target


async def test_an_edited_applied_migration_is_named(
    migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edited = copy_migrations(tmp_path)
    core = edited / "0001_core.sql"
    core.write_text(core.read_text() + "\n-- an innocent-looking edit\n")
    monkeypatch.setattr(migrate_module, "MIGRATIONS_DIR", edited)
    with pytest.raises(MigrationError, match=r"0001_core\.sql differs"):
        await migrate(store(migrated))


async def test_a_failing_migration_is_rolled_back_and_named(
    migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = copy_migrations(tmp_path)
    (files / "0099_broken.sql").write_text(
        "CREATE TABLE half_done (x int);\nALTER TABLE no_such_table ADD COLUMN y int;\n"
    )
    monkeypatch.setattr(migrate_module, "MIGRATIONS_DIR", files)
    with pytest.raises(MigrationError, match=r"0099_broken\.sql failed") as info:
        await migrate(store(migrated))
    assert isinstance(info.value.__cause__, asyncpg.UndefinedTableError)
    c = await asyncpg.connect(migrated)
    try:
        assert await c.fetchval("SELECT to_regclass('half_done')") is None
        assert await c.fetchval("SELECT max(version) FROM schema_migrations") == PLAIN_FILES[-1][:4]
    finally:
        await c.close()

    # Once fixed, the next run applies it.
    (files / "0099_broken.sql").write_text("CREATE TABLE half_done (x int);\n")
    assert (await migrate(store(migrated))).applied == ["0099_broken.sql"]


async def test_a_migration_unknown_to_this_gateway_is_refused(migrated: str) -> None:
    c = await asyncpg.connect(migrated)
    try:
        await c.execute(
            "INSERT INTO schema_migrations (version, name, flavor, file, checksum)"
            " VALUES ('0099', 'future', 'plain', '0099_future.sql', 'x')"
        )
    finally:
        await c.close()
    with pytest.raises(MigrationError, match=r"0099_future\.sql.*does not know"):
        await migrate(store(migrated))


async def test_timescaledb_on_without_the_extension_fails_before_changing_anything(
    pg_dsn: str,
) -> None:
    with pytest.raises(MigrationError, match="does not offer the timescaledb extension"):
        await migrate(store(pg_dsn, timescaledb="on"))
    c = await asyncpg.connect(pg_dsn)
    try:
        assert await c.fetchval("SELECT to_regclass('schema_migrations')") is None
    finally:
        await c.close()


async def test_a_plain_database_stays_plain_and_refuses_on(migrated: str) -> None:
    with pytest.raises(MigrationError, match="set up without TimescaleDB"):
        await migrate(store(migrated, timescaledb="on"))
    assert await migrate(store(migrated, timescaledb="off")) == MigrationResult(
        applied=[], timescaledb=False
    )


async def test_revisions_are_append_only(conn: asyncpg.Connection) -> None:
    # The shape of migration 0009 (tests/review covers the actions that write it).
    await conn.execute("INSERT INTO users (name, role) VALUES ('clerk1', 'clerk')")
    insert = (
        "INSERT INTO revisions (change_id, user_name, source, action, target_kind, target_key,"
        " target_rev, site, area, line, machine, order_id, field, old_value, new_value, reason)"
        " VALUES (gen_random_uuid(), 'clerk1', 'cli', 'adjust', 'order', '[\"o-1\"]', $1,"
        " 's1', 'a1', 'l1', 'm1', 'o-1', 'good', '10', '9', $2)"
    )
    await conn.execute(insert, 1, "one part scrapped at inspection")
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await conn.execute("UPDATE revisions SET reason = 'changed my mind'")
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await conn.execute("DELETE FROM revisions")
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await conn.execute("TRUNCATE revisions")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(insert, 2, "  ")
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, 1, "the same revision number twice")
    assert await conn.fetchval("SELECT count(*) FROM revisions") == 1


async def test_one_running_order_per_machine(conn: asyncpg.Connection) -> None:
    insert = (
        "INSERT INTO work_orders (order_id, site, area, line, machine, status)"
        " VALUES ($1, 's1', 'a1', 'l1', 'm1', $2)"
    )
    await conn.execute(insert, "o-1", "running")
    await conn.execute(insert, "o-2", "completed")
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, "o-3", "running")


# --- writer --------------------------------------------------------------------------------


async def test_write_batch_stores_envelopes_and_ignores_duplicates(
    conn: asyncpg.Connection,
) -> None:
    events = [count_event(i, ts=T0 + timedelta(seconds=i)) for i in range(5)]
    # A redelivery inside the same batch must not fail it.
    batch = [received(e) for e in events] + [received(events[2])]
    assert await write_batch(conn, batch, []) == 5

    # Across batches: two old, one new.
    extra = count_event(9)
    again = [received(events[0]), received(extra), received(events[4])]
    assert await write_batch(conn, again, []) == 1
    assert await conn.fetchval("SELECT count(*) FROM events") == 6

    row = await conn.fetchrow("SELECT * FROM events WHERE event_id = $1", events[1].event_id)
    e = events[1]
    assert row["ts"] == e.ts
    assert (row["type"], row["gateway"], row["seq"]) == ("count", "gw-01", 1)
    assert (row["site"], row["area"], row["line"], row["machine"]) == ("s1", "a1", "l1", "m1")
    assert (row["order_id"], row["shift_id"]) == ("o-1", "early")
    assert row["topic"] == "mes/v1/s1/a1/l1/m1/count"
    assert json.loads(row["data"]) == json.loads(e.data.model_dump_json())
    assert row["received_at"] is not None
    assert await conn.fetchval(
        "SELECT order_id IS NULL FROM events WHERE event_id = $1", events[0].event_id
    )


async def test_write_batch_keeps_dead_letters_byte_for_byte(conn: asyncpg.Connection) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    raw = [b"\xff\xfe not utf-8 \x00 at all", b'{"schema": "mes.event/1"', b""]
    dead = [
        DeadLetter(topic=f"mes/v1/x/{i}", payload=p, error=f"bad {i}", received_at=when)
        for i, p in enumerate(raw)
    ]
    state = Event(
        event_id=uuid7(),
        type="state",
        ts=T0,
        gateway="gw-01",
        seq=1,
        site="s1",
        area="a1",
        line="l1",
        machine="m2",
        data=StateData(bucket="down", code=17, since=T0),
    )
    assert await write_batch(conn, [received(state)], dead) == 1
    rows = await conn.fetch(
        "SELECT topic, payload, error, received_at FROM dead_letters ORDER BY id"
    )
    assert [bytes(r["payload"]) for r in rows] == raw
    assert [r["topic"] for r in rows] == ["mes/v1/x/0", "mes/v1/x/1", "mes/v1/x/2"]
    assert [r["error"] for r in rows] == ["bad 0", "bad 1", "bad 2"]
    assert {r["received_at"] for r in rows} == {when}

    # Dead letters alone are a valid batch.
    another = DeadLetter(topic="mes/v1/x/3", payload=b"{", error="bad 3", received_at=when)
    assert await write_batch(conn, [], [another]) == 0
    assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 4
    assert await write_batch(conn, [], []) == 0


async def test_an_event_postgres_cannot_hold_becomes_a_dead_letter(
    conn: asyncpg.Connection,
) -> None:
    good = count_event(1)
    nul, backslash = (
        Event(
            event_id=uuid7(),
            type="state",
            ts=T0,
            gateway="gw-01",
            seq=seq,
            site="s1",
            area="a1",
            line="l1",
            machine="m1",
            data=StateData(bucket="down", reason=reason, since=T0),
        )
        for seq, reason in ((2, "jam\x00"), (3, "C:\\u0000"))
    )
    assert await write_batch(conn, [received(good), received(nul), received(backslash)], []) == 2
    letter = await conn.fetchrow("SELECT payload, error FROM dead_letters")
    assert bytes(letter["payload"]) == nul.to_json()
    assert "U+0000" in letter["error"]
    stored = await conn.fetchval(
        "SELECT data->>'reason' FROM events WHERE event_id = $1", backslash.event_id
    )
    assert stored == "C:\\u0000"


async def test_a_failed_batch_stores_nothing(conn: asyncpg.Connection) -> None:
    await conn.execute("ALTER TABLE dead_letters ADD CONSTRAINT no_x CHECK (topic <> 'x')")
    dead = [DeadLetter(topic="x", payload=b"{}", error="bad", received_at=T0)]
    with pytest.raises(StoreError, match="1 events and 1 dead letters") as info:
        await write_batch(conn, [received(count_event(1))], dead)
    assert isinstance(info.value.__cause__, asyncpg.CheckViolationError)
    assert await conn.fetchval("SELECT count(*) FROM events") == 0
    # The connection is still usable, and the staging table holds nothing of the failed batch.
    assert await write_batch(conn, [received(count_event(2))], []) == 1


async def test_write_one_by_one_commits_each_event(conn: asyncpg.Connection) -> None:
    events = [count_event(i) for i in range(3)]
    assert await write_one_by_one(conn, [received(e) for e in events]) == 3
    assert await write_one_by_one(conn, [received(events[1]), received(count_event(7))]) == 1
    assert await conn.fetchval("SELECT count(*) FROM events") == 4


# --- retention -----------------------------------------------------------------------------


async def test_prune_deletes_events_older_than_the_retention_in_batches(
    conn: asyncpg.Connection, migrated: str
) -> None:
    now = datetime.now(UTC)
    old = [count_event(i, ts=now - timedelta(days=40, minutes=i)) for i in range(7)]
    young = [count_event(i, ts=now - timedelta(days=20)) for i in range(3)]
    assert await write_batch(conn, [received(e) for e in old + young], []) == 10

    assert await prune(conn, store(migrated, events_retention_days=0)) == 0
    assert await prune(conn, store(migrated, events_retention_days=30), batch_size=3) == 7
    left = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM events")}
    assert left == {e.event_id for e in young}
    assert await prune(conn, store(migrated, events_retention_days=30)) == 0
    assert await prune(conn, store(migrated, events_retention_days=10)) == 3


async def test_prune_on_an_unmigrated_database_is_a_store_error(pg_dsn: str) -> None:
    c = await asyncpg.connect(pg_dsn)
    try:
        with pytest.raises(StoreError, match="not migrated"):
            await prune(c, store(pg_dsn))
    finally:
        await c.close()


# --- connections ---------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connect_failure_names_the_server_but_not_the_password() -> None:
    port = closed_port()
    cfg = store(f"postgresql://mesgw:s3cr%40t-pw@127.0.0.1:{port}/mes", connect_timeout_s=2)
    with pytest.raises(StoreError) as info:
        await connect(cfg)
    message = str(info.value)
    assert f"mesgw@127.0.0.1:{port}/mes" in message
    assert "s3cr" not in message


async def test_a_bad_dsn_is_a_store_error_without_the_secret() -> None:
    cfg = store("mysql://root:hunter2@db/mes", password=SecretStr("hunter2"))
    with pytest.raises(StoreError, match="invalid DSN") as info:
        await connect(cfg)
    assert "hunter2" not in str(info.value)


async def test_connect_sends_the_configured_password_and_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The local server trusts every login, so the driver call itself is checked.
    seen: dict[str, object] = {}

    async def fake_connect(dsn: str, **kwargs: object) -> str:
        seen.update(kwargs, dsn=dsn)
        return "connection"

    db_module = importlib.import_module("gateway.store.db")
    monkeypatch.setattr(db_module.asyncpg, "connect", fake_connect)
    dsn = "postgresql://mesgw:from-dsn@db.example:5432/mes"
    cfg = store(dsn, password=SecretStr("from-file"), connect_timeout_s=4)
    assert await connect(cfg) == "connection"
    assert seen == {"dsn": dsn, "password": "from-file", "timeout": 4.0}
    await connect(store(dsn), timeout=0.5)
    assert seen == {"dsn": dsn, "password": None, "timeout": 0.5}


async def test_stored_data_is_the_validated_model_not_the_loose_input(
    conn: asyncpg.Connection,
) -> None:
    wire = json.loads(count_event(3).to_json())
    wire["data"]["good"] = "3"  # lax JSON a publisher might send; pydantic accepts it
    del wire["data"]["quality"]  # defaulted field left out
    raw = json.dumps(wire).encode()
    event = Event.from_json(raw)
    item = Received(event=event, payload=raw, topic="mes/v1/s1/a1/l1/m1/count")
    assert await write_batch(conn, [item], []) == 1
    data = json.loads(await conn.fetchval("select data from events"))
    assert data["good"] == 3 and data["quality"] == "ok"


async def test_a_redelivered_batch_stores_its_dead_letters_once(
    conn: asyncpg.Connection,
) -> None:
    letter = DeadLetter("mes/v1/s1/a1/l1/m1/count", b"\xffnot json", "invalid JSON", T0)
    event = received(count_event(1))
    assert await write_batch(conn, [event], [letter, letter]) == 1
    assert await write_batch(conn, [event], [letter]) == 0  # the broker delivered it again
    other = DeadLetter("mes/v1/s1/a1/l1/m2/count", b"\xffnot json", "invalid JSON", T0)
    await write_batch(conn, [], [other])  # same bytes on another topic is another letter
    rows = await conn.fetch("select topic, payload from dead_letters order by id")
    assert [(r["topic"], bytes(r["payload"])) for r in rows] == [
        (letter.topic, letter.payload),
        (other.topic, other.payload),
    ]
