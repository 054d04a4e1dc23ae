"""TimescaleDB fixture: PGlite (PostgreSQL 17 + TimescaleDB in WASM) over the wire protocol.

TimescaleDB is not packaged in Debian, so the integration tests run it from npm
(tools/pglite). A missing Node.js or a failed install fails the test: the TimescaleDB path
must be tested, not silently skipped (`make pglite` installs both).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PGLITE_DIR = Path(__file__).resolve().parents[2] / "tools" / "pglite"
READY_TIMEOUT_S = 60.0


def _installed() -> bool:
    # The same test as tools/ensure-pglite: npm writes this file last, and a newer lock file
    # means the pinned versions changed since.
    marker = PGLITE_DIR / "node_modules" / ".package-lock.json"
    lock = PGLITE_DIR / "package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime


def _ensure_installed(npm: str) -> None:
    if _installed():
        return
    # Parallel test runs must not run `npm ci` into the same directory at once.
    lock_path = Path(tempfile.gettempdir()) / "mesgw-pglite-install.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed():
            return
        proc = subprocess.run(
            [npm, "ci", "--legacy-peer-deps", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PGLITE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"`npm ci` in {PGLITE_DIR} failed (exit {proc.returncode}); run `make pglite`.\n"
                f"{proc.stdout}\n{proc.stderr}",
                pytrace=False,
            )


def _start(node: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [node, "server.mjs", "--host", "127.0.0.1", "--port", "0"],
        cwd=PGLITE_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return proc, line.split()[1]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=10)
    pytest.fail(
        f"the PGlite/TimescaleDB server did not become ready:\n{log_path.read_text()}",
        pytrace=False,
    )


@pytest.fixture
def timescale_dsn(tmp_path: Path) -> Iterator[str]:
    """DSN of a fresh in-memory PGlite + TimescaleDB server, stopped afterwards.

    One client at a time: a second connection waits until the first is closed.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "Node.js and npm are needed for the TimescaleDB tests; run `make pglite`",
            pytrace=False,
        )
    _ensure_installed(npm)
    proc, dsn = _start(node, tmp_path / "pglite.log")
    try:
        yield dsn
    finally:
        proc.kill()
        proc.wait(timeout=10)
