"""The review tests use the TimescaleDB harness fixture of the integration tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "integration_conftest", Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)

timescale_dsn = _integration.timescale_dsn
