"""The golden replay: recorded sample logs replay to the very events, byte for byte, and to
the very saved state they made when recorded (golden_replay.py says what is in them)."""

from __future__ import annotations

import difflib

import pytest
from golden_replay import names, read, run


@pytest.mark.parametrize("name", names())
def test_golden_replay_is_unchanged(name: str) -> None:
    events, snapshot = run(name)
    want_events, want_snapshot = read(name)
    for what, got, want in (("events", events, want_events), ("snapshot", snapshot, want_snapshot)):
        if got != want:
            diff = difflib.unified_diff(
                want.splitlines(), got.splitlines(), "recorded", "now", lineterm="", n=1
            )
            pytest.fail(f"golden {name}: {what} differ\n" + "\n".join(list(diff)[:60]))


def test_every_golden_log_is_there() -> None:
    assert names() == ["demo", "demo-120s", "e2e", "plant"]
