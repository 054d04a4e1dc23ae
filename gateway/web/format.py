"""How the page writes numbers and times: in the plant's words, units and time zone."""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from markupsafe import Markup, escape

# What a table shows for no value, and a minus sign that lines up with digits.
DASH = "\u2013"
MINUS = "\u2212"


def parts(value: Any) -> Markup:
    """A count of parts, thousands separated, with its unit."""
    if value is None:
        return Markup(DASH)
    return Markup(f'{int(value):,}<span class="unit">pcs</span>'.replace(",", "\u202f"))


def duration(seconds: Any) -> Markup:
    """Seconds as h:mm:ss, the unit a shift is read in."""
    if seconds is None:
        return Markup(DASH)
    whole = round(float(seconds))
    sign = MINUS if whole < 0 else ""
    whole = abs(whole)
    return Markup(f"{sign}{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}")


def percent(ratio: Any, flag_over: bool = False) -> Markup:
    """A ratio in percent; above 100 % flagged where that means a wrong ideal cycle time."""
    if ratio is None:
        return Markup(DASH)
    value = float(ratio) * 100
    text = f'{value:.1f}<span class="unit">%</span>'
    if flag_over and value > 100:
        return Markup(
            f'<span class="flag" title="above 100 %: the ideal cycle time is too long">'
            f"{text} !</span>"
        )
    return Markup(text)


def clock(ts: datetime | None, tz: tzinfo, with_date: bool = False) -> str:
    if ts is None:
        return DASH
    local = ts.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def value(v: Any) -> Markup:
    """A revision's old or new value as the clerk reads it."""
    if isinstance(v, str):
        try:
            v = json.loads(v)  # jsonb as asyncpg returns it without a codec
        except ValueError:
            return escape(v)
    if v is None:
        return Markup(DASH)
    if isinstance(v, dict):
        return Markup(", ").join(
            Markup(f"{escape(k)}: {escape(x)}") for k, x in v.items() if x is not None
        )
    if isinstance(v, Decimal | float | int):
        return escape(str(v))
    return escape(str(v))


def isotime(text: str | datetime | None, tz: tzinfo) -> str:
    """An ISO-8601 time (as JSON carries it) on the plant's clock."""
    if text is None:
        return DASH
    ts = text if isinstance(text, datetime) else datetime.fromisoformat(text)
    return clock(ts, tz, with_date=True)


def tojson_sorted(v: Any) -> str:
    """The value as canonical JSON: a form sends back exactly what it was shown."""
    return json.dumps(v, sort_keys=True)


def _times(values: Any, tz: tzinfo) -> str:
    return ", ".join(isotime(v, tz)[11:] for v in (values or [])[:3]) + (
        " …" if len(values or []) > 3 else ""
    )


def entry_words(entry: dict[str, Any], tz: tzinfo) -> str:
    """A review-queue entry's details as a sentence the clerk reads, not as data."""
    d = entry.get("detail") or {}
    kind = entry.get("kind")
    if kind == "held":
        most = d.get("plausible_max")
        limit = f"at most {most} plausible" if most is not None else "no plausible rate known"
        why = "too fast" if d.get("reason") == "spike" else "went down"
        return (
            f"{d.get('counter')} counter {d.get('old_raw')} -> {d.get('new_raw')} ({why}; {limit})"
        )
    if kind == "flagged":
        return f"{d.get('records')} count record(s) flagged {d.get('quality')}"
    if kind == "downtime":
        end = isotime(d["end"], tz)[11:] if d.get("end") else "still down"
        return f"{d.get('downtime_id')}: {isotime(d.get('start'), tz)[11:]} to {end}, no reason"
    if kind == "quantity":
        return (
            f"good {d.get('good')} + scrap {d.get('scrap')} against {d.get('quantity')} planned"
            f" (tolerance {d.get('tolerance_pct')} %)"
        )
    if kind == "mismatch":
        return (
            f"total {d.get('total')} but good {d.get('good')} + reject {d.get('reject')}"
            f" in {d.get('records')} record(s)"
        )
    if kind == "no_order":
        return (
            f"{d.get('intervals')} stretch(es) without an order, from {_times(d.get('starts'), tz)}"
        )
    if kind == "link_down":
        reasons = "; ".join(str(r) for r in (d.get("reasons") or []) if r)
        return f"{d.get('outages')} outage(s) from {_times(d.get('starts'), tz)}" + (
            f": {reasons}" if reasons else ""
        )
    return "; ".join(f"{k}: {v}" for k, v in d.items() if v is not None)
