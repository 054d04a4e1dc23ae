"""What the rules need to know of the plant, as plain data (the rules never import the gateway).

`machine_spec` and `plant_rules` read the gateway's loaded configuration by attribute
(duck-typed), so `Engine.from_settings(settings)` is all the daemon needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rules.config import ReasonConfig, ReasonRule, RulesSection, ShiftCalendar, StateTableConfig


@dataclass(frozen=True, slots=True)
class TagSpec:
    role: str
    modulus: int | None = None  # counters: the value at which the counter wraps to 0
    resettable: bool = True


@dataclass(frozen=True, slots=True)
class MachineSpec:
    id: str
    area: str
    line: str
    tags: Mapping[str, TagSpec]
    ideal_cycle_time_s: float | None = None
    state_table: str | None = None
    mode_tag: str | None = None
    down_after_s: float | None = None
    max_rate_per_s: float | None = None
    micro_stop_s: float | None = None
    shift_calendar: str | None = None
    reason_map: Mapping[str, str] = field(default_factory=dict)
    reason_rules: Sequence[ReasonRule] = ()


@dataclass(frozen=True, slots=True)
class PlantRules:
    rules: RulesSection = field(default_factory=RulesSection)
    shifts: Mapping[str, ShiftCalendar] = field(default_factory=dict)
    reasons: Sequence[ReasonConfig] = ()
    state_tables: Mapping[str, StateTableConfig] = field(default_factory=dict)


def machine_spec(machine: Any) -> MachineSpec:
    """A `[[machines]]` entry of the gateway configuration as the rules see it."""
    return MachineSpec(
        id=machine.id,
        area=machine.area,
        line=machine.line,
        tags={
            name: TagSpec(role=tag.role, modulus=tag.counter_modulus, resettable=tag.resettable)
            for name, tag in machine.tags.items()
        },
        ideal_cycle_time_s=machine.ideal_cycle_time_s,
        state_table=machine.state_table,
        mode_tag=machine.mode_tag,
        down_after_s=machine.down_after_s,
        max_rate_per_s=machine.max_rate_per_s,
        micro_stop_s=machine.micro_stop_s,
        shift_calendar=machine.shift_calendar,
        reason_map=dict(machine.reason_map),
        reason_rules=tuple(machine.reason_rules),
    )


def every_reading(spec: MachineSpec) -> frozenset[str]:
    """The tags whose unchanged readings the rules use, so a connector that reports by
    exception still reads them in at every poll: the counters (a jump is judged against the
    time since the value was last seen, not since it last changed). For every other tag a
    reading that repeats the last value changes nothing: states, reasons, orders and the
    tags of reason rules act on changes, and time passes with the ticks."""
    return frozenset(name for name, tag in spec.tags.items() if tag.role.endswith("_count"))


def plant_rules(settings: Any) -> PlantRules:
    """The plant-wide rule configuration (`[rules]`, `[shifts]`, `[[reasons]]`, tables)."""
    return PlantRules(
        rules=settings.rules,
        shifts=dict(settings.shifts),
        reasons=tuple(settings.reasons),
        state_tables=dict(settings.state_tables),
    )
