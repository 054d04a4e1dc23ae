"""The gateway's small exception hierarchy."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration cannot be used; `problems` lists every `file: key: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class OutboxFull(GatewayError):
    """The outbox stayed at its bound for longer than the caller was willing to wait."""


class StoreError(GatewayError):
    """The database refused or could not be reached."""


class MigrationError(StoreError):
    """A schema migration failed or the applied history does not match the files."""
