"""The raw-sample log: what the connectors read, as JSON lines, for `mesgw replay`.

One file per UTC day (`samples-YYYYMMDD.jsonl`), one reading per line:

    {"ts": "2026-11-22T08:00:01.250Z", "machine": "filler-1", "tag": "good", "value": 1234,
     "quality": "good"}
    {"ts": "…", "machine": "filler-1", "link": "down", "error": "connection refused"}
    {"ts": "…", "machine": "filler-1", "command": "start", "order_id": "WO-1", "origin": "http"}
    {"ts": "…", "gateway": "stop"}      the gateway stopped (orderly); "start": it started

Replay treats the time between a stop (or the last line before a start) and the next data
as unknown, as the live rules did, and restarts its engine from its own state at a start.

Samples are logged when their value or quality changes (report by exception), together with
the last unchanged reading before the change: the rules react to changes and to the passing
of time, which replay rebuilds from the timestamps, and a counter's wrap-or-reset judgement
depends on when it was last seen unchanged — so the log replays to the same events at a
fraction of the volume.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from connectors.sample import Link, Quality, Reading, Sample
from gateway.errors import GatewayError
from rules.inputs import GatewayMark, OrderCommand, OrderOrigin

Logged = Reading | OrderCommand | GatewayMark
_QUALITIES = set(get_args(Quality))
_ORIGINS = set(get_args(OrderOrigin))


class SampleLogError(GatewayError):
    """A sample log line that cannot be read; names the file and line."""


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_line(item: Logged) -> str:
    """One reading or command as a JSON line (without the newline)."""
    if isinstance(item, Sample):
        record: dict[str, Any] = {
            "ts": _iso(item.ts),
            "machine": item.machine,
            "tag": item.tag,
            "value": item.value,
            "quality": item.quality,
        }
        if item.status is not None:
            record["status"] = item.status
    elif isinstance(item, GatewayMark):
        record = {"ts": _iso(item.ts), "gateway": item.kind}
    elif isinstance(item, Link):
        record = {"ts": _iso(item.ts), "machine": item.machine, "link": "up" if item.up else "down"}
        if item.error is not None:
            record["error"] = item.error
    else:
        record = {"ts": _iso(item.ts), "machine": item.machine, "command": item.action}
        for key in ("order_id", "product", "quantity", "ideal_cycle_time_s"):
            value = getattr(item, key)
            if value is not None:
                record[key] = value
        record["origin"] = item.origin
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def _timestamp(raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise ValueError("ts must be an ISO-8601 string")
    ts = datetime.fromisoformat(raw)
    if ts.utcoffset() is None:
        raise ValueError("ts must carry a time zone")
    return ts.astimezone(UTC)


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def from_line(line: str) -> Logged:
    """Parse one JSON line; raises ValueError saying what is wrong."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("a line must be a JSON object")
    ts = _timestamp(record.get("ts"))
    if "gateway" in record:
        if record["gateway"] not in ("start", "stop"):
            raise ValueError("gateway must be 'start' or 'stop'")
        return GatewayMark(kind=record["gateway"], ts=ts)
    machine = _text(record, "machine")
    if "link" in record:
        if record["link"] not in ("up", "down"):
            raise ValueError("link must be 'up' or 'down'")
        return Link(machine=machine, up=record["link"] == "up", ts=ts, error=record.get("error"))
    if "command" in record:
        if record["command"] not in ("start", "stop"):
            raise ValueError("command must be 'start' or 'stop'")
        origin = record.get("origin", "cli")
        if origin not in _ORIGINS:
            raise ValueError(f"origin must be one of {', '.join(sorted(_ORIGINS))}")
        return OrderCommand(
            machine=machine,
            action=record["command"],
            ts=ts,
            origin=origin,
            order_id=record.get("order_id"),
            product=record.get("product"),
            quantity=record.get("quantity"),
            ideal_cycle_time_s=record.get("ideal_cycle_time_s"),
        )
    quality = record.get("quality", "good")
    if quality not in _QUALITIES:
        raise ValueError(f"quality must be one of {', '.join(sorted(_QUALITIES))}")
    value = record.get("value")
    if value is not None and not isinstance(value, bool | int | float | str):
        raise ValueError("value must be a number, string, boolean or null")
    return Sample(
        machine=machine,
        tag=_text(record, "tag"),
        value=value,
        ts=ts,
        quality=quality,
        status=record.get("status"),
    )


def read_log(path: Path) -> Iterator[Logged]:
    """Every reading of a sample log file, in file order; errors name file and line."""
    try:
        fh = path.open(encoding="utf-8")
    except OSError as err:
        raise SampleLogError(f"{path}: cannot read: {err.strerror}") from err
    with fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield from_line(line)
            except (ValueError, TypeError) as err:
                raise SampleLogError(f"{path}:{number}: {err}") from err


def _day(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y%m%d")


class _Lines:
    """`to_line` for samples, at a fraction of its cost (tens of thousands a second from OPC
    UA): the machine and tag part is built once per tag, the time once per timestamp (the
    samples of one reading share theirs), the day is read off the ISO text, and plain
    numbers are written by their repr as `json.dumps` writes them. The same text, exactly
    (a test compares them)."""

    def __init__(self) -> None:
        self._heads: dict[tuple[str, str], str] = {}
        self._ts: object = None
        self._iso = self._day = ""

    def __call__(self, item: Logged) -> tuple[str, str]:
        """(day, line) of one reading or command."""
        if type(item) is not Sample:
            return _day(item.ts), to_line(item)
        ts = item.ts
        if ts is not self._ts:
            utc = ts if ts.tzinfo is UTC else ts.astimezone(UTC)
            iso = utc.isoformat(timespec="milliseconds")
            self._iso = iso[:-6] + "Z"  # "+00:00"
            self._day = iso[0:4] + iso[5:7] + iso[8:10]
            self._ts = ts
        key = (item.machine, item.tag)
        head = self._heads.get(key)
        if head is None:
            machine = json.dumps(item.machine, ensure_ascii=False)
            tag = json.dumps(item.tag, ensure_ascii=False)
            head = self._heads[key] = f',"machine":{machine},"tag":{tag},"value":'
        value = item.value
        kind = type(value)
        if kind is float and math.isfinite(value):  # type: ignore[arg-type]
            text = float.__repr__(value)
        elif kind is int:
            text = int.__repr__(value)
        elif kind is bool:
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        else:
            text = json.dumps(value, ensure_ascii=False)
        line = '{"ts":"' + self._iso + '"' + head + text + ',"quality":"' + item.quality + '"'
        if item.status is not None:
            line += ',"status":' + json.dumps(item.status, ensure_ascii=False)
        return self._day, line + "}"


class SampleLog:
    """Appends readings that changed to the day's file; `flush()` writes them out."""

    def __init__(self, directory: Path, *, keep_days: int = 14) -> None:
        self.directory = directory
        self.keep_days = keep_days
        self._last: dict[tuple[str, str], tuple[object, str]] = {}
        self._held: dict[tuple[str, str], Sample] = {}  # last unchanged reading, not yet logged
        self._pending: list[tuple[str, str]] = []  # (day, line)
        self._pruned_day: str | None = None
        self._line = _Lines()
        self.written = 0

    def add(self, items: Iterable[Logged]) -> None:
        """Log one batch of readings (as a connector delivered it). The last unchanged
        readings of the tags that change go before the whole batch, so that the samples of
        one reading stay together (the rules take a reading as one instant)."""
        before: list[tuple[str, str]] = []
        lines: list[tuple[str, str]] = []
        line = self._line
        for item in items:
            if isinstance(item, Sample):
                key = (item.machine, item.tag)
                # type() keeps 1 and True (and 1 and 1.0) apart: the rules may treat them so.
                seen = (type(item.value), item.value), item.quality
                if self._last.get(key) == seen:
                    self._held[key] = item
                    continue
                self._last[key] = seen
                held = self._held.pop(key, None)
                if held is not None:
                    before.append(line(held))
            elif isinstance(item, GatewayMark):
                # The last unchanged readings before a stop are when each value was last
                # seen (wraps are judged from there); after it every value is news again.
                for held in self._held.values():
                    before.append(line(held))
                self._held.clear()
                self._last.clear()
            elif isinstance(item, Link) and not item.up:
                # After a gap, the first value of every tag is news again.
                for key in [k for k in self._last if k[0] == item.machine]:
                    del self._last[key]
                    held = self._held.pop(key, None)
                    if held is not None:
                        before.append(line(held))
            lines.append(line(item))
        self._pending.extend(before)
        self._pending.extend(lines)

    def flush(self) -> int:
        """Write pending lines (blocking: call from a worker thread); returns lines written."""
        pending, self._pending = self._pending, []
        if not pending:
            return 0
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        by_day: dict[str, list[str]] = {}
        for day, line in pending:
            by_day.setdefault(day, []).append(line)
        for day, lines in by_day.items():
            path = self.directory / f"samples-{day}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
        self.written += len(pending)
        return len(pending)

    def maintain(self, now: datetime) -> int:
        """`flush()`, and `prune()` once a day (blocking: call from a worker thread)."""
        written = self.flush()
        day = _day(now)
        if day != self._pruned_day:
            self._pruned_day = day
            self.prune(now)
        return written

    def prune(self, now: datetime) -> list[Path]:
        """Delete day files older than keep_days (0 keeps all); returns what was deleted."""
        if not self.keep_days or not self.directory.is_dir():
            return []
        oldest = (now.astimezone(UTC) - timedelta(days=self.keep_days)).strftime("%Y%m%d")
        removed = []
        for path in self.directory.glob("samples-*.jsonl"):
            day = path.stem.removeprefix("samples-")
            if day.isdigit() and day < oldest:
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed
