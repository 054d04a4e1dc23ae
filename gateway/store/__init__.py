"""The store: PostgreSQL (TimescaleDB when available) behind the recorder.

`connect` opens a connection, `migrate` brings the schema and policies up to date,
`write_batch` stores received events, the typed rows derived from them and dead letters,
`prune` applies event retention on plain PostgreSQL. OEE is computed by SQL functions of the
schema (migration 0005), read by `gateway.report`.
"""

from gateway.store.db import connect, describe
from gateway.store.migrate import MigrationResult, migrate
from gateway.store.retention import prune
from gateway.store.writer import DeadLetter, Received, write_batch, write_one_by_one

__all__ = [
    "DeadLetter",
    "MigrationResult",
    "Received",
    "connect",
    "describe",
    "migrate",
    "prune",
    "write_batch",
    "write_one_by_one",
]
