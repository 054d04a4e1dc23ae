"""Versioned schema migrations, with or without TimescaleDB.

Files in `migrations/` are named `NNNN_name.sql` (both flavours) or `NNNN_name.plain.sql` /
`NNNN_name.timescaledb.sql` (one flavour; a version may have both variants). Each file runs in
its own transaction together with its `schema_migrations` row, so a failure leaves no trace.
Every row records the flavour it was applied with: a database set up on one flavour is never
silently migrated as the other. Concurrent runs are serialised by an advisory lock, so two
gateways starting at once cannot both apply the same file.

On TimescaleDB the configurable policies (compression, retention, aggregate refresh) are then
brought in line with the configuration; they are not in the SQL files because they change
with the configuration, not with the schema version.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Literal, cast

import asyncpg
import structlog

from gateway.config import StoreSection
from gateway.errors import MigrationError
from gateway.store.db import connect, describe
from gateway.store.grants import grant_roles

Flavor = Literal["plain", "timescaledb"]

log = structlog.get_logger("gateway.store.migrate")

# Tests point this at a copy to exercise edited or broken migration files.
MIGRATIONS_DIR: Traversable = files("gateway.store") / "migrations"

_FILE_RE = re.compile(
    r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<flavor>plain|timescaledb))?\.sql$"
)

# pg_advisory_lock key shared by every gateway migrating the same database ("mesgwmig").
LOCK_KEY = int.from_bytes(b"mesgwmig", "big")

# by_range() and real-time aggregates by option need this version.
MIN_TIMESCALEDB = (2, 13)

# The hourly aggregate is refreshed over its whole history (start_offset NULL): a refresh
# only recomputes buckets invalidated by late rows, and late rows are normal here (a gateway
# outbox drains days of backlog after an outage). The newest hour is left to real-time
# aggregation, which reads the raw rows.
REFRESH_END_OFFSET = timedelta(hours=1)
REFRESH_SCHEDULE = timedelta(minutes=30)

_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    name       text        NOT NULL,
    flavor     text        NOT NULL CHECK (flavor IN ('plain', 'timescaledb')),
    file       text        NOT NULL,
    checksum   text        NOT NULL,  -- sha256 of the file, line endings normalised
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class MigrationResult:
    applied: list[str]  # file names applied by this call, in order
    timescaledb: bool


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    file: str
    flavor: Flavor | None  # None: applies to both flavours
    sql: str
    checksum: str


@dataclass(frozen=True, slots=True)
class _Applied:
    version: str
    file: str
    flavor: str
    checksum: str


def load_migrations(flavor: Flavor, directory: Traversable | None = None) -> list[Migration]:
    """The migrations that make up the schema on `flavor`, in version order."""
    root = MIGRATIONS_DIR if directory is None else directory
    by_version: dict[str, list[Migration]] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_RE.match(entry.name)
        if match is None:
            raise MigrationError(
                f"{entry.name}: not a migration file name (NNNN_name.sql, "
                "NNNN_name.plain.sql or NNNN_name.timescaledb.sql)"
            )
        raw = entry.read_bytes().replace(b"\r\n", b"\n")
        try:
            sql = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise MigrationError(f"{entry.name}: not UTF-8: {err}") from err
        migration = Migration(
            version=match["version"],
            name=match["name"],
            file=entry.name,
            flavor=cast("Flavor | None", match["flavor"]),  # the pattern admits only these
            sql=sql,
            checksum=hashlib.sha256(raw).hexdigest(),
        )
        by_version.setdefault(migration.version, []).append(migration)

    chosen: list[Migration] = []
    for version, group in sorted(by_version.items()):
        names = {m.name for m in group}
        flavors = [m.flavor for m in group]
        listing = ", ".join(sorted(m.file for m in group))
        if (
            len(names) > 1
            or len(set(flavors)) != len(flavors)
            or (None in flavors and len(group) > 1)
        ):
            raise MigrationError(f"version {version} is ambiguous: {listing}")
        for m in group:
            if m.flavor in (None, flavor):
                chosen.append(m)
    return chosen


async def migrate(cfg: StoreSection, *, lock_timeout: float = 300.0) -> MigrationResult:
    """Bring the database's schema and TimescaleDB policies up to date; idempotent.

    Raises MigrationError when the history in the database does not match the files (edited
    or unknown migrations, a different flavour), when `timescaledb = "on"` cannot be met, when
    a migration fails (that migration is rolled back), or when another migration holds the
    lock for longer than `lock_timeout` seconds.
    """
    conn = await connect(cfg)
    try:
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY, timeout=lock_timeout)
        except TimeoutError as err:
            raise MigrationError(
                f"another migration of {describe(cfg)} held the lock for over {lock_timeout:g}s"
            ) from err
        try:
            return await _migrate_locked(conn, cfg)
        finally:
            # Closing the connection would release the lock too, but PGlite (the test
            # harness) keeps one backend session for all clients, so unlock explicitly.
            if not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
        raise MigrationError(f"migrating {describe(cfg)} failed: {err}") from err
    finally:
        await conn.close()


async def _migrate_locked(conn: asyncpg.Connection, cfg: StoreSection) -> MigrationResult:
    applied = await _applied(conn)
    flavor = await _choose_flavor(conn, cfg, {a.flavor for a in applied.values()})
    if flavor == "timescaledb":
        await _create_timescaledb(conn)
    await conn.execute(_SCHEMA_MIGRATIONS)

    migrations = load_migrations(flavor)
    known = {m.version: m for m in migrations}
    for version, row in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {row.file} applied, which this gateway does not "
                "know (was it migrated by a newer version?)"
            )
        if migration.file != row.file or migration.checksum != row.checksum:
            raise MigrationError(
                f"{migration.file} differs from the version applied to the database "
                f"({row.file}, sha256 {row.checksum[:12]}…): applied migrations must not be "
                "edited; add a new migration instead"
            )

    done: list[str] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        try:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, flavor, file, checksum)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    migration.version,
                    migration.name,
                    flavor,
                    migration.file,
                    migration.checksum,
                )
        except asyncpg.PostgresError as err:
            raise MigrationError(f"{migration.file} failed and was rolled back: {err}") from err
        log.info("migration applied", file=migration.file, flavor=flavor)
        done.append(migration.file)

    if flavor == "timescaledb":
        for change in await apply_policies(conn, cfg):
            log.info("timescaledb policy updated", change=change)
    granted = await grant_roles(conn)
    if granted:
        log.info("role rights granted", roles=granted)
    return MigrationResult(applied=done, timescaledb=flavor == "timescaledb")


async def _applied(conn: asyncpg.Connection) -> dict[str, _Applied]:
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
        return {}
    rows = await conn.fetch("SELECT version, file, flavor, checksum FROM schema_migrations")
    return {
        r["version"]: _Applied(r["version"], r["file"], r["flavor"], r["checksum"]) for r in rows
    }


async def _choose_flavor(conn: asyncpg.Connection, cfg: StoreSection, recorded: set[str]) -> Flavor:
    if len(recorded) > 1:
        raise MigrationError(
            f"schema_migrations mixes flavours {sorted(recorded)}; the schema is inconsistent"
        )
    previous = next(iter(recorded), None)
    available = bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
        )
    )
    mode = cfg.timescaledb
    if mode == "on":
        if previous == "plain":
            raise MigrationError(
                "store.timescaledb = 'on', but this database was set up without TimescaleDB; "
                "converting existing tables is not automatic (set 'auto' or 'off' to keep it)"
            )
        if not available:
            raise MigrationError(
                f"store.timescaledb = 'on', but the server at {describe(cfg)} does not offer "
                "the timescaledb extension (install it, or set store.timescaledb = 'auto'/'off')"
            )
        return "timescaledb"
    if mode == "off":
        if previous == "timescaledb":
            raise MigrationError(
                "store.timescaledb = 'off', but this database was set up with TimescaleDB "
                "(set 'auto' or 'on' to keep using it)"
            )
        return "plain"
    # auto: an existing database keeps the flavour it was built with.
    if previous == "plain":
        if available:
            log.warning(
                "timescaledb available but not used: this database was set up without it",
                database=describe(cfg),
            )
        return "plain"
    if previous == "timescaledb":
        return "timescaledb"
    return "timescaledb" if available else "plain"


async def _create_timescaledb(conn: asyncpg.Connection) -> None:
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError as err:
        raise MigrationError(
            f"cannot create the timescaledb extension: {err} (it must be listed in "
            "shared_preload_libraries, and the role needs CREATE on the database)"
        ) from err
    version = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    )
    numbers = tuple(int(n) for n in re.findall(r"\d+", str(version))[:2])
    if numbers < MIN_TIMESCALEDB:
        wanted = ".".join(map(str, MIN_TIMESCALEDB))
        raise MigrationError(f"timescaledb {version} is too old; {wanted} or newer is needed")


async def _job(conn: asyncpg.Connection, proc: str, relation: str) -> asyncpg.Record | None:
    # Job configs are jsonb holding intervals as text ("7 days"); PostgreSQL parses them, so
    # "7 days" and "168:00:00" compare equal. Keys a policy does not have come back NULL.
    return await conn.fetchrow(
        """
        SELECT job_id,
               schedule_interval,
               (config ->> 'compress_after')::interval AS compress_after,
               (config ->> 'drop_after')::interval     AS drop_after,
               (config ->> 'start_offset')::interval   AS start_offset,
               (config ->> 'end_offset')::interval     AS end_offset
        FROM timescaledb_information.jobs
        WHERE proc_name = $1 AND hypertable_schema = current_schema() AND hypertable_name = $2
        """,
        proc,
        relation,
    )


async def apply_policies(conn: asyncpg.Connection, cfg: StoreSection) -> list[str]:
    """Create or update the TimescaleDB policies from `cfg`; returns what changed.

    A policy whose settings differ is replaced (remove + add) in one transaction.
    """
    changes: list[str] = []
    async with conn.transaction():
        compress_after = timedelta(days=cfg.compress_after_days)
        job = await _job(conn, "policy_compression", "events")
        if job is None or job["compress_after"] != compress_after:
            if job is not None:
                await conn.execute("SELECT remove_compression_policy('events')")
            await conn.execute(
                "SELECT add_compression_policy('events', compress_after => $1::interval)",
                compress_after,
            )
            changes.append(f"events: compress after {cfg.compress_after_days} days")

        job = await _job(conn, "policy_retention", "events")
        if cfg.events_retention_days == 0:
            if job is not None:
                await conn.execute("SELECT remove_retention_policy('events')")
                changes.append("events: retention removed (keep forever)")
        else:
            drop_after = timedelta(days=cfg.events_retention_days)
            if job is None or job["drop_after"] != drop_after:
                if job is not None:
                    await conn.execute("SELECT remove_retention_policy('events')")
                await conn.execute(
                    "SELECT add_retention_policy('events', drop_after => $1::interval)",
                    drop_after,
                )
                changes.append(f"events: drop after {cfg.events_retention_days} days")

        job = await _job(conn, "policy_refresh_continuous_aggregate", "counts_hourly")
        current = (
            job is not None
            and job["start_offset"] is None
            and job["end_offset"] == REFRESH_END_OFFSET
            and job["schedule_interval"] == REFRESH_SCHEDULE
        )
        if not current:
            if job is not None:
                await conn.execute("SELECT remove_continuous_aggregate_policy('counts_hourly')")
            await conn.execute(
                "SELECT add_continuous_aggregate_policy('counts_hourly',"
                " start_offset => NULL::interval, end_offset => $1::interval,"
                " schedule_interval => $2::interval)",
                REFRESH_END_OFFSET,
                REFRESH_SCHEDULE,
            )
            changes.append("counts_hourly: refresh policy")
    return changes
