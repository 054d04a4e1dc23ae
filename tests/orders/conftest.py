"""Fixtures of the work-order tests (helpers live in orders_support.py)."""

from __future__ import annotations

import pytest
from orders_support import MemoryDesk


@pytest.fixture
def desk() -> MemoryDesk:
    return MemoryDesk()
