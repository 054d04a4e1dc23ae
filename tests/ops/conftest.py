"""Fixtures of the operations tests: processes killed at the end whatever happened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ops_support import Proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.kill()
