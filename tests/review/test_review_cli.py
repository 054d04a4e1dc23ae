"""The clerk's command line end to end against a real PostgreSQL (what the README shows)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from review_support import seed

from gateway.cli import main

pytestmark = pytest.mark.integration

WINDOW = ["--from", "2025-03-04T00:00Z", "--to", "2025-03-05T00:00Z"]


@pytest.fixture
async def config(pg_dsn: str, tmp_path: Path) -> Path:
    await seed(pg_dsn)
    path = tmp_path / "review.toml"
    path.write_text(
        f'[store]\ndsn = "{pg_dsn}"\n[logging]\nlevel = "warning"\n'
        '[[reasons]]\ncode = "17"\ntext = "jam"\n'
    )
    return path


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_clerks_workflow(
    config: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = ["--config", str(config)]
    code, out, _ = await run(capsys, "user", "add", "anna", "--role", "clerk", *cfg)
    assert (code, out) == (0, "user anna added as clerk\n")
    code, _, err = await run(capsys, "user", "add", "anna", "--role", "clerk", *cfg)
    assert (code, err) == (1, "mesgw: user 'anna' exists already\n")

    code, out, _ = await run(capsys, "review", "queue", *cfg, *WINDOW, "--user", "anna")
    assert code == 0
    assert out.splitlines()[0].endswith(": 8 entries")
    assert "  m1       order o-1  held count m1-good-1: spike of good, 400 parts claimed" in out
    assert "key downtime:m1-d1" in out

    me = ["--user", "anna", *cfg]
    code, out, _ = await run(
        capsys, "correct", "held", "m1-good-1", "--accept", "25", "--reason", "25 were real", *me
    )
    assert (code, out) == (
        0,
        "revision 1 of held_count m1-good-1: accepted - -> 25  (anna, cli: 25 were real)\n",
    )
    code, out, _ = await run(
        capsys,
        "correct",
        "count",
        "o-1",
        "--machine",
        "m2",
        "--good",
        "+40",
        "--reason",
        "hand count",
        "--revision",
        "0",
        *me,
    )
    assert out == (
        "revision 1 of order o-1 s1 a1 l1 m2: good 960 -> 1000  (anna, cli: hand count)\n"
    )
    code, _, err = await run(
        capsys,
        "correct",
        "count",
        "o-1",
        "--machine",
        "m2",
        "--good",
        "990",
        "--reason",
        "again",
        "--revision",
        "0",
        *me,
    )
    assert code == 1 and "is at revision 1, the edit was based on revision 0" in err
    code, _, err = await run(
        capsys, "correct", "count", "o-1", "--machine", "m2", "--good", "990", *me
    )
    assert (code, err) == (
        1,
        "mesgw: a reason is required: say why (it is kept with the revision)\n",
    )
    code, out, _ = await run(
        capsys, "correct", "reason", "m1-d1", "17", "--reason", "operator", *me
    )
    assert out.endswith("reason - -> 17 (jam)  (anna, cli: operator)\n")

    code, out, _ = await run(capsys, "confirm", "o-1", *me)
    assert code == 0 and out.count("status completed -> confirmed") == 2
    code, _, err = await run(
        capsys,
        "correct",
        "count",
        "o-1",
        "--machine",
        "m1",
        "--scrap",
        "+1",
        "--reason",
        "late",
        *me,
    )
    assert code == 1 and "is confirmed (by anna): a supervisor must reopen it" in err
    code, _, err = await run(capsys, "reopen", "o-1", "--reason", "x", *me)
    assert code == 1 and "needs the role supervisor" in err

    first = tmp_path / "first.csv"
    code, _, err = await run(
        capsys, "export", "confirmations", "--order", "o-1", "--out", str(first), *me
    )
    assert code == 0 and "2 lines, 2 new; recorded 2 in the ledger (run 1)" in err
    code, out, err = await run(capsys, "export", "confirmations", "--order", "o-1", *me)
    assert out.encode() == first.read_bytes()
    assert "2 lines, 0 new" in err
    code, out, err = await run(
        capsys, "export", "confirmations", *WINDOW, "--check", "--format", "json", *me
    )
    assert code == 0 and '"order": "o-2"' in out and "would record 1" in err
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM export_lines") == 2
        assert await conn.fetchval("SELECT count(DISTINCT user_name) FROM revisions") == 1
    finally:
        await conn.close()

    code, _, err = await run(
        capsys, "correct", "count", "o-2", "--good", "1", "--reason", "x", "--machine", "m9", *me
    )
    assert code == 1 and "did not run on 'm9' (it ran on m1)" in err
    code, _, err = await run(capsys, "correct", "count", "o-1", "--good", "1", "--reason", "x", *me)
    assert code == 1 and "several machines" in err
    code, _, err = await run(capsys, "confirm", "o-9", *me)
    assert (code, err) == (1, "mesgw: no order 'o-9'\n")
    code, _, err = await run(capsys, "confirm", "o-2", "--user", "nobody", *cfg)
    assert code == 1 and "no user 'nobody'" in err
    code, out, _ = await run(capsys, "user", "token", "anna", *cfg)
    assert out.startswith("mgw_")
