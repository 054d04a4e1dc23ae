"""`mesgw outbox stat` for people (and `--json`), and `mesgw outbox backup` of a live outbox."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import OutboxSection
from gateway.events import CountData, Draft
from gateway.outbox import Outbox, read_stats


def drafts(n: int) -> list[Draft]:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Draft(
            "count",
            t + timedelta(seconds=i),
            "a",
            "l",
            "m1",
            CountData(good=1, reject=0, total=1, start=t, end=t + timedelta(seconds=i + 1)),
        )
        for i in range(n)
    ]


def config(tmp_path: Path) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(f'[outbox]\npath = "{tmp_path / "outbox.db"}"\n')
    return path


async def test_backup_of_a_running_outbox_is_complete_and_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = Outbox(OutboxSection(path=tmp_path / "outbox.db"), gateway_id="gw", site="s")
    await box.open()
    try:
        await box.append(drafts(1200), state={"rules": b'{"saved": true}'})
        sent = await box.peek(0, 200)
        await box.remove([r.id for r in sent])  # 200 acknowledged: 1,000 still waiting
        dest = tmp_path / "backup" / "outbox-copy.db"
        dest.parent.mkdir()
        # The daemon keeps the outbox open (and writing) while the copy is taken.
        assert main(["outbox", "backup", "--config", str(config(tmp_path)), str(dest)]) == 0
        await box.append(drafts(5))
    finally:
        await box.close()
    out = capsys.readouterr().out
    assert "1,000 waiting events, last sequence number 1,200" in out
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    copy = read_stats(dest)
    assert (copy.depth, copy.last_seq) == (1000, 1200)
    # The copy is a working outbox: restored, it carries on from the same sequence number.
    restored = Outbox(OutboxSection(path=dest), gateway_id="gw", site="s")
    await restored.open()
    try:
        rows = await restored.peek(0, 10_000)
        assert [r.event.seq for r in rows] == list(range(201, 1201))
        assert (await restored.load_state()) == {"rules": b'{"saved": true}'}
        sealed = await restored.append(drafts(1))
        assert sealed[0].seq == 1201
    finally:
        await restored.close()
    # Never over an existing file.
    assert main(["outbox", "backup", "--config", str(config(tmp_path)), str(dest)]) == 1
    assert "exists" in capsys.readouterr().err


async def test_stat_is_a_table_for_people_and_json_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = Outbox(OutboxSection(path=tmp_path / "outbox.db"), gateway_id="gw", site="s")
    await box.open()
    try:
        await box.append(drafts(3))
    finally:
        await box.close()
    assert main(["outbox", "stat", "--config", str(config(tmp_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["outbox", str(tmp_path / "outbox.db")]
    assert lines[1].split() == ["waiting", "events", "3"]
    assert lines[2].split()[:2] == ["capacity", "1,000,000"]
    assert lines[4].split() == ["last", "sequence", "number", "3"]
    assert main(["outbox", "stat", "--json", "--config", str(config(tmp_path))]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["depth"], data["last_seq"], data["capacity"]) == (3, 3, 1_000_000)
    assert data["oldest_age_s"] >= 0
    missing = tmp_path / "other.toml"
    missing.write_text(f'[outbox]\npath = "{tmp_path / "none.db"}"\n')
    assert main(["outbox", "stat", "--config", str(missing)]) == 1
    assert "no outbox at" in capsys.readouterr().err
