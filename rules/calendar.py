"""Shift calendars: a weekly pattern with breaks and dated exceptions, in local time.

Shift times are wall-clock times in the calendar's time zone, turned into UTC instants per
date, so a night shift over a DST change is 7 or 9 hours long, as worked. A shift whose end
is not after its start ends the next day. Where two shifts would overlap (a night shift
running into a changed next day), the later one wins from its start.

A shift occurrence's id is `<calendar>-<local start date YYYYMMDD>-<shift name>`.
"""

from __future__ import annotations

import math
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from rules.config import DAYS, ShiftCalendar, ShiftTimes

SegmentKind = Literal["on", "break", "off"]
_LOOKAHEAD_DAYS = 14


@dataclass(frozen=True, slots=True)
class ShiftOccurrence:
    shift_id: str
    calendar: str
    name: str
    start: float
    end: float
    breaks: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of time with one meaning: in a shift (`on`), in its break, or off shift."""

    start: float
    end: float
    kind: SegmentKind
    shift: ShiftOccurrence | None


ALWAYS = Segment(-math.inf, math.inf, "on", None)


class Calendar:
    """Answers "what is this instant" for one calendar; remembers the last answer."""

    def __init__(self, name: str, config: ShiftCalendar, zone: str) -> None:
        self.name = name
        self.config = config
        self.zone = zoneinfo.ZoneInfo(config.timezone or zone)
        self._days: dict[date, list[ShiftOccurrence]] = {}
        self._last: Segment | None = None

    def segment_at(self, t: float) -> Segment:
        last = self._last
        if last is not None and last.start <= t < last.end:
            return last
        seg = self._find(t)
        self._last = seg
        return seg

    def _find(self, t: float) -> Segment:
        today = datetime.fromtimestamp(t, self.zone).date()
        occurrences = self._around(today)
        ended = -math.inf
        for occ in occurrences:
            if occ.start <= t < occ.end:
                return _within(occ, t)
            if occ.end <= t:
                ended = max(ended, occ.end)
        following = [o.start for o in occurrences if o.start > t]
        day = today + timedelta(days=2)
        while not following and (day - today).days <= _LOOKAHEAD_DAYS:
            following = [o.start for o in self._occurrences(day) if o.start > t]
            day += timedelta(days=1)
        start = ended if ended > -math.inf else t
        # With no shift for two weeks, look again a day later: the answer stays correct.
        end = min(following) if following else t + 86400.0
        return Segment(start, end, "off", None)

    def _around(self, today: date) -> list[ShiftOccurrence]:
        """Occurrences starting from two days before to one day after, overlaps clipped."""
        raw: list[ShiftOccurrence] = []
        for offset in (-2, -1, 0, 1):
            raw.extend(self._occurrences(today + timedelta(days=offset)))
        raw.sort(key=lambda o: o.start)
        clipped: list[ShiftOccurrence] = []
        for occ, after in zip(raw, [*raw[1:], None], strict=True):
            end = occ.end if after is None else min(occ.end, after.start)
            if end <= occ.start:
                continue
            if end != occ.end:
                breaks = tuple((s, min(e, end)) for s, e in occ.breaks if s < end)
                occ = ShiftOccurrence(occ.shift_id, occ.calendar, occ.name, occ.start, end, breaks)
            clipped.append(occ)
        return clipped

    def _occurrences(self, day: date) -> list[ShiftOccurrence]:
        cached = self._days.get(day)
        if cached is None:
            cached = [self._occurrence(day, s) for s in self._shifts_of(day)]
            if len(self._days) > 64:
                self._days.clear()
            self._days[day] = cached
        return cached

    def _shifts_of(self, day: date) -> list[ShiftTimes]:
        for exc in self.config.exceptions:
            if exc.date <= day <= (exc.until or exc.date):
                return list(exc.shifts)
        weekday = DAYS[day.weekday()]
        return [s for s in self.config.shifts if weekday in s.days]

    def _occurrence(self, day: date, shift: ShiftTimes) -> ShiftOccurrence:
        end_day = day if shift.end > shift.start else day + timedelta(days=1)
        breaks = []
        for br in shift.breaks:
            b_day = day if br.start >= shift.start else day + timedelta(days=1)
            e_day = b_day if br.end > br.start else b_day + timedelta(days=1)
            breaks.append((self._instant(b_day, br.start), self._instant(e_day, br.end)))
        return ShiftOccurrence(
            shift_id=f"{self.name}-{day:%Y%m%d}-{shift.name}",
            calendar=self.name,
            name=shift.name,
            start=self._instant(day, shift.start),
            end=self._instant(end_day, shift.end),
            breaks=tuple(sorted(breaks)),
        )

    def _instant(self, day: date, at: time) -> float:
        """The UTC instant of a local wall-clock time. A time the clock skips (spring
        forward) is the moment of the jump; a time it shows twice (fall back), the first."""
        local = datetime.combine(day, at, self.zone)
        t = local.timestamp()
        if datetime.fromtimestamp(t, self.zone).replace(tzinfo=None) == local.replace(tzinfo=None):
            return t
        lo, hi = sorted((local.replace(fold=1).timestamp(), t))
        offset = datetime.fromtimestamp(lo, self.zone).utcoffset()
        while hi - lo > 1:  # the offset changes in (lo, hi]: find that second
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self.zone).utcoffset() == offset:
                lo = mid
            else:
                hi = mid
        return hi


def _within(occ: ShiftOccurrence, t: float) -> Segment:
    start, end = occ.start, occ.end
    for b_start, b_end in occ.breaks:
        if b_start <= t < b_end:
            return Segment(b_start, b_end, "break", occ)
        if b_end <= t:
            start = max(start, b_end)
        elif b_start > t:
            end = min(end, b_start)
    return Segment(start, end, "on", occ)


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def ms_stamp(t: float) -> str:
    """t as `YYYYMMDDTHHMMSSfffZ`, cut to the millisecond as every event timestamp is."""
    stamp = utc(t)
    return f"{stamp:%Y%m%dT%H%M%S}{stamp.microsecond // 1000:03d}Z"


def ms_of(t: float) -> int:
    """t in whole milliseconds, cut as event timestamps are."""
    stamp = utc(t)
    return int(stamp.timestamp()) * 1000 + stamp.microsecond // 1000


class ShiftCursor:
    """Where a machine's time is in its shift calendar: the segment it is in (a shift, its
    break, or off shift), up to that segment's end, when the cursor moves on."""

    __slots__ = ("calendar", "segment")

    def __init__(self, calendar: Calendar | None) -> None:
        self.calendar = calendar
        self.segment: Segment = ALWAYS

    def at(self, t: float) -> Segment:
        """The segment at t (without moving there)."""
        return ALWAYS if self.calendar is None else self.calendar.segment_at(t)

    @property
    def shift(self) -> ShiftOccurrence | None:
        return self.segment.shift

    @property
    def shift_id(self) -> str | None:
        shift = self.segment.shift
        return None if shift is None else shift.shift_id
