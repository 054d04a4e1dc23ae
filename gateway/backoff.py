"""Backoff lives in `common.backoff` (the connectors use it too); this name stays for the daemon."""

from common.backoff import Backoff as Backoff
