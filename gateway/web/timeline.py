"""The state timeline: a machine's time across a shift as one SVG bar, bucket by bucket.

People read a bar faster than a table: where the machine ran, stood, starved or was changed
over. Each piece is one stored `state_intervals` row clipped to the window, so the picture is
the data: every <rect> carries the interval's bucket, start and end as data attributes (the
browser test compares them with the rows), and its <title> says the same in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from xml.sax.saxutils import escape, quoteattr

# Colours a plant would expect: green runs, red is down, amber starved/blocked (held up from
# outside), blue changeover, grey unknown; the rest muted.
COLOURS: Final[dict[str, str]] = {
    "running": "#2e7d32",
    "idle": "#c0ca33",
    "starved": "#f9a825",
    "blocked": "#ef6c00",
    "down": "#c62828",
    "changeover": "#1565c0",
    "planned_stop": "#6a1b9a",
    "not_scheduled": "#e0e0e0",
    "unknown": "#757575",
}
LABELS: Final[dict[str, str]] = {
    "running": "running",
    "idle": "idle",
    "starved": "starved",
    "blocked": "blocked",
    "down": "down",
    "changeover": "changeover",
    "planned_stop": "planned stop",
    "not_scheduled": "not scheduled",
    "unknown": "unknown (not watched)",
}

SEGMENTS_SQL = """
SELECT bucket, greatest(start_ts, $5) AS start_ts, least(coalesce(end_ts, $7), $6) AS end_ts,
       code, reason, order_id
FROM state_intervals
WHERE (site, area, line, machine) = ($1, $2, $3, $4)
  AND start_ts < $6 AND (end_ts IS NULL OR end_ts > $5)
ORDER BY start_ts
"""


@dataclass(frozen=True, slots=True)
class Segment:
    bucket: str
    start: datetime
    end: datetime
    code: str | None = None
    reason: str | None = None
    order_id: str | None = None

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


async def fetch_segments(
    conn: Any,
    machine: tuple[str, str, str, str],
    start: datetime,
    end: datetime,
    now: datetime,
) -> list[Segment]:
    """The machine's state intervals inside [start, end); an open one lasts until `now`."""
    rows = await conn.fetch(SEGMENTS_SQL, *machine, start, end, min(now, end))
    return [
        Segment(r["bucket"], r["start_ts"], r["end_ts"], r["code"], r["reason"], r["order_id"])
        for r in rows
        if r["end_ts"] > r["start_ts"]
    ]


def _clock(ts: datetime, tz: Any) -> str:
    return ts.astimezone(tz).strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def render_svg(
    segments: list[Segment],
    start: datetime,
    end: datetime,
    tz: Any,
    *,
    width: int = 1000,
    height: int = 28,
    label: str = "state timeline",
) -> str:
    """One bar [start, end) wide `width` user units; a piece per segment, positioned by time.
    The SVG scales to its container (viewBox), so it reads on a tablet as on a desktop."""
    span = (end - start).total_seconds()
    parts = [
        f'<svg class="timeline" viewBox="0 0 {width} {height + 16}" role="img"'
        f' aria-label={quoteattr(label)} preserveAspectRatio="none"'
        f' xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa"/>',
    ]
    for s in segments:
        x = (s.start - start).total_seconds() / span * width
        w = s.seconds / span * width
        words = f"{LABELS.get(s.bucket, s.bucket)} {_clock(s.start, tz)}-{_clock(s.end, tz)}"
        words += f" ({_duration(s.seconds)})"
        if s.reason or s.code:
            words += f": {s.reason or ''} {'[' + s.code + ']' if s.code else ''}".rstrip()
        if s.order_id:
            words += f", order {s.order_id}"
        parts.append(
            f'<rect class="seg seg-{s.bucket}" x="{x:.3f}" y="0" width="{max(w, 0.5):.3f}"'
            f' height="{height}" fill="{COLOURS.get(s.bucket, "#000")}"'
            f" data-bucket={quoteattr(s.bucket)} data-start={quoteattr(s.start.isoformat())}"
            f" data-end={quoteattr(s.end.isoformat())}><title>{escape(words)}</title></rect>"
        )
    # Hour ticks in plant time, so the bar can be read against the clock.
    for tick in _hour_ticks(start, end, tz):
        x = (tick - start).total_seconds() / span * width
        parts.append(
            f'<line x1="{x:.3f}" y1="{height}" x2="{x:.3f}" y2="{height + 4}" stroke="#555"/>'
            f'<text x="{x:.3f}" y="{height + 14}" font-size="10" text-anchor="middle">'
            f"{tick.astimezone(tz).strftime('%H:%M')}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _hour_ticks(start: datetime, end: datetime, tz: Any) -> list[datetime]:
    from datetime import timedelta

    local = start.astimezone(tz)
    first = local.replace(minute=0, second=0, microsecond=0)
    if first < local:
        first += timedelta(hours=1)
    ticks = []
    t = first
    while t < end:
        ticks.append(t)
        t += timedelta(hours=1)
    step = max(1, len(ticks) // 12)  # at most about a dozen labels
    return ticks[::step]
