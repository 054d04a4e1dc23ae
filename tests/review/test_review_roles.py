"""deploy/postgres/roles.sql and `mesgw db migrate`'s grants: no service role may rewrite
revisions or the export ledger."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from review_support import seed

from gateway.store.grants import grant_roles

pytestmark = pytest.mark.integration

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "roles.sql"


async def test_the_review_role_may_only_read_and_append(pg_dsn: str) -> None:
    await seed(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(ROLES_SQL.read_text())
        await grant_roles(conn)
        for role in ("mesgw_recorder", "mesgw_review", "mesgw_reader"):
            for table in ("revisions", "export_runs", "export_lines"):
                for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
                    assert not await conn.fetchval(
                        "SELECT has_table_privilege($1, $2, $3)", role, table, privilege
                    ), (role, table, privilege)
        assert await conn.fetchval(
            "SELECT has_table_privilege('mesgw_review', 'revisions', 'INSERT')"
        )
        assert not await conn.fetchval(
            "SELECT has_table_privilege('mesgw_review', 'counts', 'INSERT')"
        )
        await conn.execute("SET ROLE mesgw_review")
        await conn.execute(
            "INSERT INTO revisions (change_id, user_name, source, action, target_kind,"
            " target_key, target_rev, held_id, field, new_value, reason) VALUES"
            " (gen_random_uuid(), 'clerk1', 'cli', 'reject', 'held_count', '[\"m1-good-1\"]', 1,"
            " 'm1-good-1', 'accepted', '0', 'glitch')"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE revisions SET reason = 'other'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE counts SET good = 0")
        await conn.execute("RESET ROLE")
    finally:
        await conn.close()
