"""Connections to the store (PostgreSQL, optionally with TimescaleDB)."""

from __future__ import annotations

import urllib.parse

import asyncpg

from gateway.config import StoreSection
from gateway.errors import StoreError


def rowcount(status: str) -> int:
    """Rows affected, from asyncpg's command tag ("DELETE 5000", "INSERT 0 17")."""
    return int(status.rsplit(" ", 1)[-1])


def describe(cfg: StoreSection) -> str:
    """`user@host:port/database` of the configured DSN: safe to log, never carries a secret."""
    dsn = cfg.dsn.get_secret_value()
    try:
        parts = urllib.parse.urlsplit(dsn)
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable dsn>"
    database = parts.path.lstrip("/")
    return f"{user}{'@' if user else ''}{host}{port}/{database}"


def _secrets(cfg: StoreSection) -> list[str]:
    found = []
    if cfg.password is not None and cfg.password.get_secret_value():
        found.append(cfg.password.get_secret_value())
    try:
        parts = urllib.parse.urlsplit(cfg.dsn.get_secret_value())
        query = urllib.parse.parse_qs(parts.query)
        candidates = [parts.password, *query.get("password", [])]
    except ValueError:
        candidates = []
    for secret in candidates:
        if secret:
            found += [secret, urllib.parse.unquote(secret)]
    return found


def redact(text: str, cfg: StoreSection) -> str:
    """`text` with every password of `cfg` replaced by '***' (driver errors may quote the DSN)."""
    for secret in sorted(_secrets(cfg), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


async def connect(cfg: StoreSection, *, timeout: float | None = None) -> asyncpg.Connection:
    """Open one connection; `cfg.password` (from the config or a secret file) beats the DSN's.

    Raises StoreError naming the server (without credentials) when it cannot be reached, the
    login is refused, or `timeout` (default `cfg.connect_timeout_s`) passes.
    """
    password = cfg.password.get_secret_value() if cfg.password is not None else None
    limit = cfg.connect_timeout_s if timeout is None else timeout
    try:
        return await asyncpg.connect(
            cfg.dsn.get_secret_value(),
            password=password,
            timeout=limit,
        )
    except TimeoutError as err:
        raise StoreError(
            f"cannot connect to PostgreSQL at {describe(cfg)}: no answer within {limit:g}s"
        ) from err
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        # ClientConfigurationError (a bad DSN) is an InterfaceError and a ValueError.
        reason = redact(str(err) or type(err).__name__, cfg)
        raise StoreError(f"cannot connect to PostgreSQL at {describe(cfg)}: {reason}") from err
