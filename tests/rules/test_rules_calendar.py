"""Shift calendars in local time: DST, exceptions, overlaps, ids."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from rules.calendar import Calendar
from rules.config import ShiftCalendar, ShiftException, ShiftPattern, ShiftTimes


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


NIGHT = ShiftPattern(name="night", days=["sat"], start=time(22), end=time(6))
EARLY = ShiftPattern(name="early", days=["mon-fri"], start=time(6), end=time(14))


def test_night_shifts_over_both_dst_changes_last_as_worked() -> None:
    cal = Calendar("c", ShiftCalendar(shifts=[NIGHT]), "Europe/Berlin")
    spring = cal.segment_at(ts("2026-03-29T00:00:00"))
    autumn = cal.segment_at(ts("2026-10-25T00:00:00"))
    assert spring.shift and autumn.shift
    assert (spring.shift.end - spring.shift.start) / 3600 == 7
    assert (autumn.shift.end - autumn.shift.start) / 3600 == 9
    assert autumn.shift.shift_id == "c-20261024-night"


def test_exceptions_replace_the_pattern_for_their_days() -> None:
    config = ShiftCalendar(
        shifts=[EARLY],
        exceptions=[
            ShiftException(date=date(2026, 12, 24), until=date(2026, 12, 26)),
            ShiftException(
                date=date(2026, 12, 27),  # a Sunday worked
                shifts=[ShiftTimes(name="extra", start=time(8), end=time(12))],
            ),
        ],
    )
    cal = Calendar("c", config, "UTC")
    assert cal.segment_at(ts("2026-12-23T07:00:00")).kind == "on"
    for day in ("24", "25", "26"):
        assert cal.segment_at(ts(f"2026-12-{day}T07:00:00")).kind == "off"
    sunday = cal.segment_at(ts("2026-12-27T09:00:00"))
    assert sunday.shift and sunday.shift.shift_id == "c-20261227-extra"
    off = cal.segment_at(ts("2026-12-24T07:00:00"))
    assert (iso(off.start), iso(off.end)) == ("2026-12-23 14:00", "2026-12-27 08:00")


def test_a_shift_running_into_the_next_days_first_one_ends_there() -> None:
    config = ShiftCalendar(
        shifts=[EARLY],
        exceptions=[
            ShiftException(
                date=date(2026, 3, 2),
                shifts=[ShiftTimes(name="long", start=time(20), end=time(8))],
            )
        ],
    )
    cal = Calendar("c", config, "UTC")
    seg = cal.segment_at(ts("2026-03-03T05:00:00"))
    assert seg.shift and seg.shift.name == "long" and iso(seg.end) == "2026-03-03 06:00"
    assert cal.segment_at(seg.end).shift.name == "early"  # type: ignore[union-attr]


def test_breaks_are_their_own_segments() -> None:
    shift = ShiftPattern(
        name="early",
        days=["mon"],
        start=time(6),
        end=time(14),
        breaks=[{"start": time(9), "end": time(9, 30)}],  # type: ignore[list-item]
    )
    cal = Calendar("c", ShiftCalendar(shifts=[shift]), "UTC")
    kinds = [
        (iso(s.start), iso(s.end), s.kind)
        for s in (cal.segment_at(ts(f"2026-03-02T{h}:00:00")) for h in ("07", "09", "10"))
    ]
    assert kinds == [
        ("2026-03-02 06:00", "2026-03-02 09:00", "on"),
        ("2026-03-02 09:00", "2026-03-02 09:30", "break"),
        ("2026-03-02 09:30", "2026-03-02 14:00", "on"),
    ]
