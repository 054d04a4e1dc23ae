"""systemd as PID 1 of private namespaces, to run the shipped units as they are.

The host has no systemd manager (and tests must not touch the host's services), so the box
starts `/lib/systemd/systemd --system` as PID 1 of new PID, mount, UTS and IPC namespaces.
The network is the host's (the units talk to the test's broker and database). `/etc`,
`/opt`, `/usr/local`, `/usr/share/doc` and `/var/lib` are overlays whose changes land in the
box's directory (`/run` is a tmpfs), so `deploy/install` runs unmodified (user, venv, PATH
link, docs, units) and the host is left as it was. Only a handful of empty targets exist
besides the units the install puts in `/etc/systemd/system` (the host's unit files and
generators are hidden), so nothing else is started: no udev, no mounts, no journald (a
unit's output falls back to /dev/null; the tests observe through systemctl, the broker, the
metrics endpoint and the database).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

SYSTEMD = Path("/lib/systemd/systemd")
OVERLAID = ("/etc", "/opt", "/usr/local", "/usr/share/doc", "/var/lib")
TARGETS = (
    "sysinit", "basic", "multi-user", "network", "network-online", "network-pre", "sockets",
    "timers", "paths", "shutdown", "local-fs", "remote-fs", "swap", "slices", "nss-user-lookup",
    "time-sync", "default",
)  # fmt: skip


def available() -> str | None:
    """Why the box cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (namespaces, overlay mounts)"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not SYSTEMD.exists():
        return f"needs {SYSTEMD}"
    return None


class SystemdBox:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None  # systemd's pid, as the host sees it

    def _inner_script(self) -> str:
        w = self.workdir
        lines = ["set -eu", "mount --make-rprivate /"]
        for path in OVERLAID:
            name = path.strip("/").replace("/", "_")
            up, work = w / "ov" / name / "up", w / "ov" / name / "work"
            lines += [
                f"mkdir -p {up} {work}",
                f"mount -t overlay overlay -o lowerdir={path},upperdir={up},workdir={work} {path}",
            ]
        lines += [
            f"mount --bind {w / 'targets'} /usr/lib/systemd/system",
            f"mount --bind {w / 'empty'} /usr/lib/systemd/system-generators",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            # The host's own units and their links are not the box's business.
            "find /etc/systemd/system -mindepth 1 -maxdepth 1 -exec rm -rf {} +",
            "rm -f /etc/machine-id && systemd-machine-id-setup >/dev/null 2>&1 || true",
            f"exec env container=mesgw-box {SYSTEMD} --system --unit=basic.target "
            "--log-target=console --show-status=no",
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> None:
        targets = self.workdir / "targets"
        targets.mkdir(parents=True)
        (self.workdir / "empty").mkdir()
        for name in TARGETS:
            (targets / f"{name}.target").write_text(f"[Unit]\nDescription={name}\n")
        for name in ("-", "system", "user", "machine"):
            (targets / f"{name}.slice").write_text(f"[Unit]\nDescription={name} slice\n")
        script = self.workdir / "inner.sh"
        script.write_text(self._inner_script())
        log = (self.workdir / "systemd.log").open("wb")
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--uts", "--ipc",
             "sh", str(script)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pid = self._find_pid()
            if self.pid is not None and self.run(["systemctl", "is-system-running"]).stdout:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd box ended: {self.log()}")
            time.sleep(0.2)
        raise TimeoutError(f"systemd did not come up within {timeout}s: {self.log()}")

    def _find_pid(self) -> int | None:
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return None
        for pid in children.split():
            if Path(f"/proc/{pid}/exe").resolve() == SYSTEMD.resolve():
                return int(pid)
        return None

    def log(self) -> str:
        path = self.workdir / "systemd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def run(
        self, argv: list[str], *, timeout: float = 60.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A command inside the box (its mounts and PID namespace), as root."""
        assert self.pid is not None
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def write(self, path: str, text: str, mode: str = "0644", group: str = "root") -> None:
        done = self.run(["install", "-m", mode, "-g", group, "/dev/stdin", path], input=text)
        assert done.returncode == 0, done.stderr

    def kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)  # PID 1 of the box: its namespace ends with it
        if self.proc is not None:
            self.proc.wait(timeout=20)
        self._remove_cgroups()

    def _remove_cgroups(self) -> None:
        # systemd made its cgroups in the host's hierarchy (cgroup v1 here); empty ones go.
        root = Path("/sys/fs/cgroup/systemd")
        for top in ("system.slice", "init.scope", "user.slice", "machine.slice"):
            base = root / top
            if not base.is_dir():
                continue
            for sub in sorted(base.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if sub.is_dir():
                    with contextlib.suppress(OSError):
                        sub.rmdir()
