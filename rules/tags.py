"""A machine's tags as the rules see them: which plays which role, and the values watched."""

from __future__ import annotations

from typing import Any

from rules.counters import Counter
from rules.reasons import Reason, Reasons
from rules.spec import MachineSpec, PlantRules
from rules.states import StateTable


class MachineTags:
    """Owns the machine's tags by role (`roles`: tag → role; its `counters` and the most
    parts a second they may show; the state, reason and mode tags; the state table), and
    the last `values` of the tags the rules
    look at besides counters (state, reason, mode, reason-rule conditions), from which a
    downtime's reason is resolved."""

    __slots__ = (
        "counters",
        "max_rate",
        "mode_tag",
        "reason_tag",
        "reasons",
        "roles",
        "state_tag",
        "table",
        "values",
        "watched",
    )

    def __init__(self, spec: MachineSpec, plant: PlantRules) -> None:
        self.counters: dict[str, Counter] = {}
        self.roles: dict[str, str] = {}
        for name, tag in spec.tags.items():
            self.roles[name] = tag.role
            if tag.role.endswith("_count"):
                self.counters[name] = Counter(name, tag.role, tag.modulus, tag.resettable)
        self.state_tag = next((n for n, r in self.roles.items() if r == "state"), None)
        self.reason_tag = next((n for n, r in self.roles.items() if r == "reason"), None)
        self.mode_tag = spec.mode_tag
        self.table = (
            StateTable.build(spec.state_table, plant.state_tables)
            if spec.state_table is not None
            else None
        )
        if self.state_tag is not None and self.table is None:
            raise ValueError(f"machine {spec.id}: a state tag needs a state table")
        self.reasons = Reasons(
            plant.reasons, spec.reason_map, spec.reason_rules, plant.rules.changeover_reason
        )
        # Tags whose value the rules look at besides their role: rule conditions, mode.
        self.watched = set(self.reasons.rule_tags)
        if spec.mode_tag is not None:
            self.watched.add(spec.mode_tag)
        self.values: dict[str, Any] = {}
        # The most parts a second the counters may show (else a change is held).
        self.max_rate: float | None = None
        if spec.max_rate_per_s is not None:
            self.max_rate = spec.max_rate_per_s
        elif spec.ideal_cycle_time_s is not None:
            self.max_rate = plant.rules.rate_tolerance / spec.ideal_cycle_time_s

    @property
    def mode(self) -> Any:
        """The operation mode the mode tag shows (None without one)."""
        return self.values.get(self.mode_tag) if self.mode_tag else None

    def resolve(self, changeover: bool) -> Reason | None:
        """The reason the values give for a stop (or a changeover) now, if any."""
        values = self.values
        plc = values.get(self.reason_tag) if self.reason_tag is not None else None
        state = values.get(self.state_tag) if self.state_tag is not None else None
        return self.reasons.resolve(plc, state, values, changeover)
