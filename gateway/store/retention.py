"""Retention of raw events on plain PostgreSQL (TimescaleDB drops whole chunks by policy)."""

from __future__ import annotations

import asyncpg

from gateway.config import StoreSection
from gateway.errors import StoreError
from gateway.store.db import rowcount

# Small enough that one DELETE holds its locks and WAL briefly, large enough to keep up.
PRUNE_BATCH = 5000


async def prune(
    conn: asyncpg.Connection, cfg: StoreSection, *, batch_size: int = PRUNE_BATCH
) -> int:
    """Delete events older than `cfg.events_retention_days`; returns how many were deleted.

    Deletes in batches of `batch_size`, each committed on its own (call it outside a
    transaction), so a large backlog never becomes one long transaction. A no-op returning 0
    when retention is 0 (keep forever) and on TimescaleDB, where the retention policy drops
    old chunks instead.
    """
    if cfg.events_retention_days == 0:
        return 0
    try:
        flavor = await conn.fetchval("SELECT flavor FROM schema_migrations LIMIT 1")
        if flavor is None:
            raise StoreError("the store is not migrated (schema_migrations is empty)")
        if flavor == "timescaledb":
            return 0
        # One cutoff for the whole run, so the loop ends even while events keep arriving.
        cutoff = await conn.fetchval(
            "SELECT now() - make_interval(days => $1)", cfg.events_retention_days
        )
        deleted = 0
        while True:
            status = await conn.execute(
                "DELETE FROM events WHERE ctid = ANY (ARRAY("
                " SELECT ctid FROM events WHERE ts < $1 LIMIT $2))",
                cutoff,
                batch_size,
            )
            count = rowcount(status)
            deleted += count
            if count < batch_size:
                return deleted
    except asyncpg.UndefinedTableError as err:
        raise StoreError("the store is not migrated (no schema_migrations table)") from err
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
        raise StoreError(f"pruning old events failed: {err}") from err
