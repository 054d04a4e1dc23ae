"""Configuration of the production rules: timing, shift calendars, reasons, state tables.

`gateway.config` embeds these models (`[rules]`, `[shifts.*]`, `[[reasons]]`,
`[state_tables.*]` and the rule keys of `[[machines]]`); this module must not import the
gateway. `check_references` runs over the whole loaded configuration and reports every
dangling name with its key path.
"""

from __future__ import annotations

import itertools
import zoneinfo
from collections.abc import Iterator
from datetime import date as Day
from datetime import time
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

Bucket = Literal[
    "running",
    "idle",
    "starved",
    "blocked",
    "down",
    "changeover",
    "planned_stop",
    "not_scheduled",
    "unknown",
]
Loss = Literal["availability", "performance", "planned"]

PRESETS = ("packml-packtags", "packml-opc30060", "machinery")
COUNTER_ROLES = ("total_count", "good_count", "reject_count")
SINGLE_ROLES = (*COUNTER_ROLES, "state", "reason", "order")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")]


def _code_text(value: object) -> object:
    # Codes come from TOML as numbers or strings; the catalog compares them as text.
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return value


Code = Annotated[
    str,
    BeforeValidator(_code_text),
    StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$"),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RulesSection(_Section):
    """`[rules]`: plant-wide defaults of the production rules."""

    count_interval_s: float = Field(
        10.0, gt=0, le=3600, description="count events per machine at least this often"
    )
    micro_stop_s: float = Field(120.0, ge=0, description="a stop shorter than this is micro")
    micro_stop_loss: Literal["availability", "performance"] = Field(
        "performance", description="the OEE factor a micro-stop is charged to"
    )
    starved_blocked_loss: Literal["availability", "performance"] = Field(
        "performance",
        description="the OEE factor a starved/blocked stop (caused up- or downstream) is "
        "charged to; performance keeps it out of this machine's availability loss",
    )
    min_state_s: float = Field(
        2.0, ge=0, le=600, description="debounce: a machine state must last this long"
    )
    down_after_cycles: float = Field(
        3.0, gt=0, description="no count for this many ideal cycles = down (inferred stop)"
    )
    down_after_s: float = Field(
        60.0, gt=0, description="inferred-stop delay for a machine without ideal_cycle_time_s"
    )
    rate_tolerance: float = Field(
        1.5, ge=1, description="max plausible rate = rate_tolerance / ideal_cycle_time_s"
    )
    late_sample_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="the gateway's clock lets a machine's time pass only this far behind it, "
        "so a sample up to this late is still dated by its own timestamp (live = replay)",
    )
    changeover: bool = Field(True, description="order end → changeover until next good part")
    changeover_reason: Code | None = Field(None, description="catalog code for changeovers")
    timezone: str = Field("UTC", description="the plant's time zone (IANA), for shifts")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_zone(v)


def check_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown time zone {name!r} (IANA name, e.g. Europe/Berlin)") from err
    return name


class ShiftBreakConfig(_Section):
    start: time
    end: time


class ShiftTimes(_Section):
    """One shift of a day: local start and end (end ≤ start crosses midnight), breaks."""

    name: Name
    start: time
    end: time
    breaks: list[ShiftBreakConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _breaks_inside(self) -> ShiftTimes:
        length = _minutes_after(self.start, self.end) or 24 * 60
        spans = []
        for i, br in enumerate(self.breaks):
            begin = _minutes_after(self.start, br.start)
            duration = _minutes_after(br.start, br.end)
            if duration == 0 or begin + duration > length:
                raise ValueError(f"breaks[{i}]: must lie inside the shift and not be empty")
            spans.append((begin, begin + duration))
        spans.sort()
        for (_, end), (begin, _) in itertools.pairwise(spans):
            if begin < end:
                raise ValueError("breaks overlap")
        return self


def _minutes_after(origin: time, t: time) -> float:
    """Minutes from `origin` forward to the next `t` on a 24-hour clock."""
    a = origin.hour * 60 + origin.minute + origin.second / 60
    b = t.hour * 60 + t.minute + t.second / 60
    return (b - a) % (24 * 60)


def _days(value: object) -> object:
    # "mon-fri" ranges are expanded; single names pass through.
    if not isinstance(value, list):
        return value
    out: list[object] = []
    for item in value:
        if isinstance(item, str) and "-" in item:
            first, _, last = item.partition("-")
            if first in DAYS and last in DAYS:
                i, j = DAYS.index(first), DAYS.index(last)
                out.extend(DAYS[i : j + 1] if i <= j else DAYS[i:] + DAYS[: j + 1])
                continue
        out.append(item)
    return out


class ShiftPattern(ShiftTimes):
    """A shift of the weekly pattern: the same times on the given weekdays."""

    days: Annotated[
        list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]], BeforeValidator(_days)
    ] = Field(min_length=1)


class ShiftException(_Section):
    """A day (or days, through `until`) whose shifts differ from the pattern; [] = holiday."""

    date: Day
    until: Day | None = None
    name: str | None = Field(None, description="e.g. the holiday, for the reader")
    shifts: list[ShiftTimes] = Field(default_factory=list)

    @model_validator(mode="after")
    def _range(self) -> ShiftException:
        if self.until is not None and self.until < self.date:
            raise ValueError("until is before date")
        _no_overlap(self.shifts)
        return self


class ShiftCalendar(_Section):
    """`[shifts.<name>]`: a weekly shift pattern with exceptions, in the plant's time zone."""

    timezone: str | None = Field(None, description="default: rules.timezone")
    shifts: list[ShiftPattern] = Field(default_factory=list)
    exceptions: list[ShiftException] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return None if v is None else check_zone(v)

    @model_validator(mode="after")
    def _consistent(self) -> ShiftCalendar:
        names = [s.name for s in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError("shift names must be unique within a calendar")
        for day in DAYS:
            _no_overlap([s for s in self.shifts if day in s.days], day)
        return self


def _no_overlap(shifts: list[Any], day: str | None = None) -> None:
    spans = sorted((s.start.hour * 60 + s.start.minute + s.start.second / 60, s) for s in shifts)
    for (start, a), (next_start, b) in itertools.pairwise(spans):
        length = _minutes_after(a.start, a.end) or 24 * 60
        if start + length > next_start:
            where = f" on {day}" if day else ""
            raise ValueError(f"shifts {a.name} and {b.name} overlap{where}")


class ReasonConfig(_Section):
    """`[[reasons]]`: one entry of the downtime reason catalog."""

    code: Code
    text: str = Field(min_length=1)
    category: str | None = None
    planned: bool = False
    loss: Loss | None = Field(
        None, description="OEE factor charged; default planned → planned, else availability"
    )

    @model_validator(mode="after")
    def _loss(self) -> ReasonConfig:
        if self.loss is None:
            object.__setattr__(self, "loss", "planned" if self.planned else "availability")
        elif (self.loss == "planned") != self.planned:
            raise ValueError("loss 'planned' goes with planned = true, and only with it")
        return self


class StateTableConfig(_Section):
    """`[state_tables.<name>]`: PLC state codes → buckets, optionally on top of a preset."""

    base: Literal["packml-packtags", "packml-opc30060", "machinery"] | None = None
    codes: dict[str, Bucket] = Field(default_factory=dict)
    default: Bucket = Field("unknown", description="bucket of a code the table does not name")


class ReasonRule(_Section):
    """A rule of a machine's reason table: when every condition holds, this is the reason."""

    reason: Code
    state: list[Annotated[str, BeforeValidator(_code_text)]] | None = Field(
        None, description="PLC state codes (any of)"
    )
    tags: dict[str, bool | int | float | str] = Field(
        default_factory=dict, description="tag name → value it must have"
    )


def _error(loc: tuple[str | int, ...], message: str, value: object) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("reference", message), loc=loc, input=value)


def _reference_problems(settings: Any) -> Iterator[InitErrorDetails]:
    codes = {r.code for r in settings.reasons}
    seen: set[str] = set()
    for i, reason in enumerate(settings.reasons):
        if reason.code in seen:
            yield _error(("reasons", i, "code"), f"duplicate reason code {reason.code!r}", None)
        seen.add(reason.code)
    if settings.rules.changeover_reason not in (None, *codes):
        yield _error(
            ("rules", "changeover_reason"),
            f"no reason {settings.rules.changeover_reason!r} in [[reasons]]",
            settings.rules.changeover_reason,
        )
    for name in settings.state_tables:
        if name in PRESETS:
            yield _error(("state_tables", name), "name taken by a preset", name)
    tables = set(PRESETS) | set(settings.state_tables)
    for i, m in enumerate(settings.machines):
        yield from _machine_problems(("machines", i), m, settings, tables, codes)


def _machine_problems(
    loc: tuple[str | int, ...], m: Any, settings: Any, tables: set[str], codes: set[str]
) -> Iterator[InitErrorDetails]:
    roles: dict[str, str] = {}
    for name, tag in m.tags.items():
        if tag.role in SINGLE_ROLES:
            if tag.role in roles:
                yield _error(
                    (*loc, "tags", name, "role"),
                    f"a second {tag.role} tag (first: {roles[tag.role]})",
                    tag.role,
                )
            roles[tag.role] = name
    if m.state_table is not None and m.state_table not in tables:
        yield _error(
            (*loc, "state_table"),
            f"unknown state table {m.state_table!r} (presets: {', '.join(PRESETS)})",
            m.state_table,
        )
    if "state" in roles and m.state_table is None:
        yield _error((*loc, "state_table"), "a machine with a state tag needs state_table", None)
    if m.mode_tag is not None:
        if m.mode_tag not in m.tags:
            yield _error((*loc, "mode_tag"), f"no tag {m.mode_tag!r}", m.mode_tag)
        elif "state" not in roles:
            yield _error((*loc, "mode_tag"), "mode_tag needs a state tag beside it", m.mode_tag)
    calendar = m.shift_calendar
    if calendar is not None and calendar not in settings.shifts:
        yield _error((*loc, "shift_calendar"), f"no calendar [shifts.{calendar}]", calendar)
    for raw, code in m.reason_map.items():
        if code not in codes:
            yield _error((*loc, "reason_map", raw), f"no reason {code!r} in [[reasons]]", code)
    for j, rule in enumerate(m.reason_rules):
        if rule.reason not in codes:
            yield _error(
                (*loc, "reason_rules", j, "reason"),
                f"no reason {rule.reason!r} in [[reasons]]",
                rule.reason,
            )
        for tag in rule.tags:
            if tag not in m.tags:
                yield _error((*loc, "reason_rules", j, "tags", tag), "no such tag", tag)
        if rule.state is not None and "state" not in roles:
            yield _error((*loc, "reason_rules", j, "state"), "the machine has no state tag", None)


def check_references(settings: Any) -> None:
    """Raise a ValidationError naming the key of every dangling reference in the config."""
    problems = list(_reference_problems(settings))
    if problems:
        raise ValidationError.from_exception_data("Settings", problems)
