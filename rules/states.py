"""State tables: a PLC's state code (and operation mode) → one canonical bucket.

Presets:
- `packml-packtags`: PackML state numbers of PackTags v3.0 / ISA-TR88.00.02
  (0 Undefined, 1 Clearing, 2 Stopped, … 6 Execute, … 17 Complete).
- `packml-opc30060`: the PackML `StateEnumeration` of OPC 30060 (0 Stopped, 1 Resetting,
  2 Idle, 3 Starting, 4 Execute, … 16 Unholding).
- `machinery`: OPC 40001-1 `MachineryItemState` (0 NotAvailable, 1 OutOfService,
  2 NotExecuting, 3 Executing) by `MachineryOperationMode` (0 None, 1 Maintenance, 2 Setup,
  3 Processing), keyed `"state:mode"`; the mode comes from the machine's `mode_tag`.

PackML states also match by name (`Execute`, case-insensitive), as OPC UA servers often give
the state as text. The PackML mapping: Execute runs; Suspended (held up from outside: no
material upstream, or no room downstream) is starved (a custom table can say blocked);
the ready or transitional states around a start are idle; Held (a condition inside this
machine), Stopped and the abort path are down; Undefined is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rules.config import Bucket, StateTableConfig
from rules.counters import ATTENTION

_PACKML_BUCKETS: dict[str, Bucket] = {
    "undefined": "unknown",
    "clearing": "down",
    "stopped": "down",
    "starting": "idle",
    "idle": "idle",
    "suspended": "starved",
    "execute": "running",
    "stopping": "down",
    "aborting": "down",
    "aborted": "down",
    "holding": "down",
    "held": "down",
    "unholding": "down",
    "suspending": "idle",
    "unsuspending": "idle",
    "resetting": "idle",
    "completing": "idle",
    "complete": "idle",
}

PACKTAGS_NUMBERS = (
    "undefined", "clearing", "stopped", "starting", "idle", "suspended", "execute",
    "stopping", "aborting", "aborted", "holding", "held", "unholding", "suspending",
    "unsuspending", "resetting", "completing", "complete",
)  # fmt: skip
OPC30060_NUMBERS = (
    "stopped", "resetting", "idle", "starting", "execute", "completing", "complete",
    "aborting", "aborted", "stopping", "clearing", "suspending", "suspended",
    "unsuspending", "holding", "held", "unholding",
)  # fmt: skip


def _packml(numbers: tuple[str, ...]) -> dict[str, Bucket]:
    table = dict(_PACKML_BUCKETS)
    table["completed"] = "idle"  # PackTags spells state 17 "Complete" or "Completed"
    for number, name in enumerate(numbers):
        table[str(number)] = _PACKML_BUCKETS[name]
    return table


def _machinery() -> dict[str, Bucket]:
    # MachineryItemState alone decides, except where the operation mode says more:
    # setup is changeover (SEMI E10 engineering), maintenance is down.
    table: dict[str, Bucket] = {
        "0": "down",  # NotAvailable: switched off, emergency stop
        "1": "down",  # OutOfService: error, unscheduled downtime
        "2": "idle",  # NotExecuting: ready, standby
        "3": "running",  # Executing
    }
    for state in ("2", "3"):
        table[f"{state}:1"] = "down"  # Maintenance
        table[f"{state}:2"] = "changeover"  # Setup
    names = ("notavailable", "outofservice", "notexecuting", "executing")
    for number, name in enumerate(names):
        table[name] = table[str(number)]
    return table


PRESET_TABLES: dict[str, dict[str, Bucket]] = {
    "packml-packtags": _packml(PACKTAGS_NUMBERS),
    "packml-opc30060": _packml(OPC30060_NUMBERS),
    "machinery": _machinery(),
}


def code_key(value: Any) -> str | None:
    """A PLC value as the text a table is keyed by; None when it cannot be a code."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        text = value.strip().strip("\x00").strip().lower()
        return text or None
    return None


def code_value(value: Any) -> int | str | None:
    """The code as published in a state event: an int for numbers, else the text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None:
        return None
    return str(value).strip().strip("\x00").strip()


class StateTable:
    """Looks codes up, caching by raw value so repeated samples cost one dict lookup."""

    def __init__(self, codes: Mapping[str, Bucket], default: Bucket = "unknown") -> None:
        self.codes = {k.strip().lower(): v for k, v in codes.items()}
        self.default = default
        self._cache: dict[tuple[type, Any, type, Any], Bucket] = {}

    @classmethod
    def build(cls, name: str, custom: Mapping[str, StateTableConfig]) -> StateTable:
        if name in PRESET_TABLES:
            return cls(PRESET_TABLES[name])
        config = custom[name]
        codes = dict(PRESET_TABLES[config.base]) if config.base else {}
        codes.update(config.codes)
        return cls(codes, config.default)

    def bucket(self, value: Any, mode: Any = None) -> Bucket:
        key = (type(value), value, type(mode), mode)
        try:
            return self._cache[key]
        except (KeyError, TypeError):
            pass
        found = self._lookup(value, mode)
        if len(self._cache) < 4096:  # a PLC has few codes; a misbehaving one must not grow us
            self._cache[key] = found
        return found

    def names(self, value: Any, mode: Any = None) -> bool:
        """Whether the table lists this code (else its bucket is the table's default)."""
        code = code_key(value)
        if code is None:
            return False
        mode_key = code_key(mode)
        return code in self.codes or (mode_key is not None and f"{code}:{mode_key}" in self.codes)

    def _lookup(self, value: Any, mode: Any) -> Bucket:
        code = code_key(value)
        if code is None:
            return self.default
        mode_key = code_key(mode)
        if mode_key is not None:
            both = self.codes.get(f"{code}:{mode_key}")
            if both is not None:
                return both
        return self.codes.get(code, self.default)


class StateTag:
    """What the machine's state tag says: its last raw value, the bucket the state table
    gives it (with the operation mode), its code, and why it is unknown when it is."""

    __slots__ = ("bucket", "code", "mode_tag", "raw", "reason", "table")
    lost_value: Any = ATTENTION  # what `raw` is when there is no value to compare with

    def __init__(self, table: StateTable | None, mode_tag: str | None) -> None:
        self.table = table
        self.mode_tag = mode_tag
        self.raw: Any = ATTENTION  # ATTENTION: no value to compare with
        self.bucket: Bucket = "unknown"
        self.code: int | str | None = None
        self.reason: str | None = None

    def same(self, value: Any) -> bool:
        """Whether the tag still shows what it showed (1 and True are not the same)."""
        return value == self.raw and type(value) is type(self.raw)

    def read(self, value: Any, mode: Any) -> bool:
        """Take a value (and the mode beside it); whether the bucket changed."""
        assert self.table is not None
        bucket = self.table.bucket(value, mode)
        code = code_value(value)
        if mode is not None and self.mode_tag is not None:
            code = f"{code}:{code_value(mode)}"
        self.code = code
        if bucket == self.bucket:
            return False
        self.bucket = bucket
        self.reason = None
        if bucket == "unknown":
            listed = self.table.names(value, mode)
            self.reason = f"state code {code} " + (
                "means unknown" if listed else "not in the state table"
            )
        return True

    def lost(self, reason: str) -> None:
        """No value to go by (unreadable, link down, gateway stopped)."""
        self.raw = ATTENTION
        self.bucket = "unknown"
        self.code = None
        self.reason = reason
