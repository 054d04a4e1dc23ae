"""The gateway's small exception hierarchy."""

from __future__ import annotations

# The base, shared with the connectors.
from common.errors import ConfigError as ConfigError
from common.errors import GatewayError as GatewayError


class OutboxFull(GatewayError):
    """The outbox stayed at its bound for longer than the caller was willing to wait."""


class StoreError(GatewayError):
    """The database refused or could not be reached."""


class MigrationError(StoreError):
    """A schema migration failed or the applied history does not match the files."""
