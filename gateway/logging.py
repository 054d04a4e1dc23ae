"""Logging set-up lives in `common.logging` (the connectors use it too); this name stays for
the daemon."""

from common.logging import configure as configure
from common.logging import get_logger as get_logger
