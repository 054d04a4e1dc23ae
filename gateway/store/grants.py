"""What the recorder and reader roles may do, granted by `mesgw db migrate` after migrating.

deploy/postgres/roles.sql creates the roles (`mesgw_owner`, `mesgw_recorder`,
`mesgw_reader`); the owner creates the tables, so it grants on them, here, every time the
schema is brought up to date: a migration that adds a table is covered by the next
`mesgw db migrate`, and the database may have any name. Roles that do not exist are skipped
(a single-role development database needs none of this).
"""

from __future__ import annotations

import asyncpg

# The recorder writes events and everything derived from them; it deletes only for the
# retention of raw events on plain PostgreSQL (TimescaleDB drops chunks by policy).
RECORDER_INSERT = ("events", "dead_letters", "held_counts")
RECORDER_UPSERT = ("counts", "state_intervals", "downtimes", "work_orders", "shifts")
RECORDER_DELETE = ("events",)

_GRANTS = f"""
DO $grants$
DECLARE
    db text := current_database();
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_recorder') THEN
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO mesgw_recorder', db);
        GRANT USAGE ON SCHEMA public TO mesgw_recorder;
        GRANT SELECT, INSERT ON {", ".join(RECORDER_INSERT)} TO mesgw_recorder;
        GRANT SELECT, INSERT, UPDATE ON {", ".join(RECORDER_UPSERT)} TO mesgw_recorder;
        GRANT DELETE ON {", ".join(RECORDER_DELETE)} TO mesgw_recorder;
        GRANT SELECT ON schema_migrations TO mesgw_recorder;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO mesgw_recorder;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_reader') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO mesgw_reader', db);
        GRANT USAGE ON SCHEMA public TO mesgw_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO mesgw_reader;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    -- Tables made by another role (e.g. migrated once as a superuser): say so, don't fail.
    RAISE WARNING 'mesgw: cannot grant the recorder/reader roles their rights: %', SQLERRM;
END
$grants$;
"""


async def grant_roles(conn: asyncpg.Connection) -> list[str]:
    """Grant the recorder and reader roles their rights; returns the roles found."""
    await conn.execute(_GRANTS)
    rows = await conn.fetch(
        "SELECT rolname FROM pg_roles WHERE rolname IN ('mesgw_recorder', 'mesgw_reader')"
        " ORDER BY rolname"
    )
    return [r["rolname"] for r in rows]
