"""structlog set-up: JSON lines for journald, a readable console on a terminal.

The stdlib loggers of asyncua, pymodbus, paho and asyncpg go through the same processors,
so every line in the journal has one shape. Context (machine, connector) is bound with
`structlog.contextvars.bound_contextvars` inside each task.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

_LIBRARY_LOGGERS = ("asyncua", "pymodbus", "paho", "asyncpg")


class _StdHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout`/`sys.stderr` is when a line is logged, not when
    configured: a replaced one (a test's capture, a redirect) never leaves a handler on a
    closed file."""

    def __init__(self, name: Literal["stdout", "stderr"]) -> None:
        self._std = name
        super().__init__()

    @property
    def stream(self) -> Any:
        return getattr(sys, self._std)

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: Literal["stdout", "stderr"] | TextIO = "stdout",
) -> None:
    """`stream`: "stdout", "stderr" (both looked up at each line) or a file object."""
    out = getattr(sys, stream) if isinstance(stream, str) else stream
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if use_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _StdHandler(stream) if isinstance(stream, str) else logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)
    # The protocol libraries are chatty at INFO; they speak up at WARNING unless debugging.
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
