"""What the recorder, review and reader roles may do, granted by `mesgw db migrate` after
migrating.

deploy/postgres/roles.sql creates the roles (`mesgw_owner`, `mesgw_recorder`,
`mesgw_review`, `mesgw_reader`); the owner creates the tables, so it grants on them, here,
every time the schema is brought up to date: a migration that adds a table is covered by
the next `mesgw db migrate`, and the database may have any name. Roles that do not exist
are skipped (a single-role development database needs none of this).
"""

from __future__ import annotations

import asyncpg

# The recorder writes events and everything derived from them; it deletes only for the
# retention of raw events on plain PostgreSQL (TimescaleDB drops chunks by policy).
RECORDER_INSERT = ("events", "dead_letters", "held_counts")
RECORDER_UPSERT = ("counts", "state_intervals", "downtimes", "work_orders", "shifts")
RECORDER_DELETE = ("events",)
# The review service (`mesgw review`, `mesgw correct|confirm|export|user`) reads everything
# and only appends: revisions, the export ledger, users and their API tokens. It has no
# UPDATE or DELETE on any record of production or of a correction, and the revisions and
# ledger tables refuse both by trigger too. The two exceptions hold no history: the review
# page's login sessions (created, touched, ended) and a user's password hash.
REVIEW_INSERT = ("revisions", "export_runs", "export_lines", "users", "api_tokens")
REVIEW_SESSIONS = ("web_sessions",)


def _on_existing(privileges: str, tables: tuple[str, ...], role: str) -> str:
    """GRANT on those of `tables` that exist: a store migrated only part of the way (an
    upgrade in steps, a test of an old version) has not got them all yet."""
    names = ", ".join(f"'{t}'" for t in tables)
    return f"""
        FOREACH t IN ARRAY ARRAY[{names}] LOOP
            IF to_regclass(t) IS NOT NULL THEN
                EXECUTE format('GRANT {privileges} ON %I TO {role}', t);
            END IF;
        END LOOP;"""


_GRANTS = f"""
DO $grants$
DECLARE
    db text := current_database();
    t text;
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_recorder') THEN
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO mesgw_recorder', db);
        GRANT USAGE ON SCHEMA public TO mesgw_recorder;
        {_on_existing("SELECT, INSERT", RECORDER_INSERT, "mesgw_recorder")}
        {_on_existing("SELECT, INSERT, UPDATE", RECORDER_UPSERT, "mesgw_recorder")}
        {_on_existing("DELETE", RECORDER_DELETE, "mesgw_recorder")}
        GRANT SELECT ON schema_migrations TO mesgw_recorder;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO mesgw_recorder;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_review') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO mesgw_review', db);
        GRANT USAGE ON SCHEMA public TO mesgw_review;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO mesgw_review;
        {_on_existing("INSERT", REVIEW_INSERT, "mesgw_review")}
        {_on_existing("SELECT, INSERT, UPDATE, DELETE", REVIEW_SESSIONS, "mesgw_review")}
        IF to_regclass('users') IS NOT NULL THEN
            GRANT UPDATE (password_hash) ON users TO mesgw_review;
        END IF;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO mesgw_review;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_reader') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO mesgw_reader', db);
        GRANT USAGE ON SCHEMA public TO mesgw_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO mesgw_reader;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    -- Tables made by another role (e.g. migrated once as a superuser): say so, don't fail.
    RAISE WARNING 'mesgw: cannot grant the service roles their rights: %', SQLERRM;
END
$grants$;
"""


async def grant_roles(conn: asyncpg.Connection) -> list[str]:
    """Grant the recorder, review and reader roles their rights; returns the roles found."""
    await conn.execute(_GRANTS)
    rows = await conn.fetch(
        "SELECT rolname FROM pg_roles"
        " WHERE rolname IN ('mesgw_recorder', 'mesgw_review', 'mesgw_reader')"
        " ORDER BY rolname"
    )
    return [r["rolname"] for r in rows]
