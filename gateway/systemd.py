"""The systemd notify protocol (sd_notify(3)): READY, STATUS, WATCHDOG, STOPPING.

A datagram to `$NOTIFY_SOCKET`; a no-op when the daemon does not run under systemd.
"""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        # Abstract-namespace sockets are written '@name' in the environment.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog_for_us = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and watchdog_for_us else None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, **fields: str | int) -> None:
        if not self._address:
            return
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        # OSError: systemd went away (e.g. during shutdown); nothing to tell any more.
        with contextlib.suppress(OSError):
            self._sock.sendto(message.encode(), self._address)

    def ready(self, status: str) -> None:
        self.notify(ready=1, status=status)

    def status(self, status: str) -> None:
        self.notify(status=status)

    def watchdog(self) -> None:
        self.notify(watchdog=1)

    def stopping(self, status: str = "stopping") -> None:
        self.notify(stopping=1, status=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
