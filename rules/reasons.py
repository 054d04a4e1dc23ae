"""Downtime reasons: the PLC's first-out reason, else the machine's rule table, else none.

A PLC code is looked up through the machine's `reason_map` (PLC code → catalog code) in the
plant's catalog; a code the catalog lacks is still the PLC's reason (code without text). A
rule matches when every condition it names holds: the state code is one of `state`, each
named tag has the given value. The first match wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rules.config import ReasonConfig, ReasonRule
from rules.states import code_key

_NO_REASON = {None, "0", ""}


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    text: str | None = None
    category: str | None = None
    planned: bool = False
    loss: str = "availability"
    source: str = "plc"  # plc | rule | changeover


def reason_text(value: Any) -> str | None:
    """A PLC reason value as catalog text (case kept); None for 'no reason' (0, empty)."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None:
        return None
    text = str(value).strip().strip("\x00").strip()
    return None if text in _NO_REASON else text


class Reasons:
    """One machine's reason resolution over the plant catalog."""

    def __init__(
        self,
        catalog: Sequence[ReasonConfig],
        reason_map: Mapping[str, str],
        rules: Sequence[ReasonRule],
        changeover_reason: str | None,
    ) -> None:
        self.catalog = {r.code: r for r in catalog}
        self.reason_map = dict(reason_map)
        self.rules = [
            (
                rule,
                None if rule.state is None else {code_key(s) for s in rule.state},
                {tag: code_key(v) for tag, v in rule.tags.items()},
            )
            for rule in rules
        ]
        self.changeover_reason = changeover_reason
        self.rule_tags = {tag for rule in rules for tag in rule.tags}

    def entry(self, code: str, source: str) -> Reason:
        known = self.catalog.get(code)
        if known is None:
            return Reason(code=code, source=source)
        return Reason(
            code=code,
            text=known.text,
            category=known.category,
            planned=known.planned,
            loss=known.loss or "availability",
            source=source,
        )

    def resolve(
        self, plc_value: Any, state_value: Any, values: Mapping[str, Any], changeover: bool
    ) -> Reason | None:
        plc = reason_text(plc_value)
        if plc is not None:
            return self.entry(self.reason_map.get(plc, plc), "plc")
        state = code_key(state_value)
        for rule, states, tags in self.rules:
            if states is not None and state not in states:
                continue
            if any(code_key(values.get(tag)) != want for tag, want in tags.items()):
                continue
            return self.entry(rule.reason, "rule")
        if changeover and self.changeover_reason is not None:
            return self.entry(self.changeover_reason, "changeover")
        return None
