"""Shared fixtures: private PostgreSQL databases, private Mosquitto brokers, unique topic prefixes.

Tests never share a database or a topic prefix, so parallel or repeated runs never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.testing import Broker, free_port, temporary_database, wait_port

__all__ = ["Broker", "free_port", "wait_port"]

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("MESGW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def dsn_for(database: str) -> str:
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database on the local server, dropped afterwards."""
    async with temporary_database(PG_ADMIN_DSN) as dsn:
        yield dsn


@pytest.fixture
def prefix() -> str:
    """A topic prefix no other test uses."""
    return f"test/{uuid.uuid4().hex[:10]}/mes/v1"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private Mosquitto with the shipped broker config, started."""
    b = Broker(workdir=tmp_path / "broker")
    b.workdir.mkdir()
    b.start()
    try:
        yield b
    finally:
        b.kill()
