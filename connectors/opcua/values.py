"""OPC UA DataValues into Samples: value, source timestamp and quality from the StatusCode.

This is the hot path (every notification of every tag passes here), so it avoids building
asyncua's StatusCode objects or anything per value that a lookup table can do once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from asyncua import ua
from asyncua.ua.status_codes import code_to_name_doc

from connectors.opcua.nodeid import NodeAddress
from connectors.sample import Quality, Sample, Value

_SEVERITY = 0xC0000000
_BAD = 0x80000000
_PLAIN = frozenset((int, str, bool))
_names: dict[int, str] = {}


def status_name(code: int) -> str:
    """`BadNodeIdUnknown` for 0x80340000 (info bits ignored); hex for codes without a name."""
    name = _names.get(code)
    if name is None:
        known = code_to_name_doc.get(code & 0xFFFF0000)
        name = known[0] if known is not None else f"0x{code:08X}"
        _names[code] = name
    return name


@dataclass(frozen=True, slots=True)
class Tag:
    """One configured tag as the connector watches it."""

    name: str
    address: NodeAddress
    sampling_interval_s: float
    deadband: float
    poll_interval_s: float
    scale: float = 1.0
    offset: float = 0.0

    @property
    def scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0


def to_sample(machine: str, tag: Tag, dv: ua.DataValue, received: datetime) -> Sample:
    """The Sample for one DataValue; `received` stands in when the server sends no timestamp."""
    status = dv.StatusCode
    code = status.value if status is not None else 0
    ts = dv.SourceTimestamp or dv.ServerTimestamp or received
    if code & _BAD:
        return Sample(machine, tag.name, None, ts, "bad", status_name(code))
    variant = dv.Value
    raw: Any = variant.Value if variant is not None else None
    kind = type(raw)
    value: Value
    if kind is float:
        if not math.isfinite(raw):
            return Sample(machine, tag.name, None, ts, "bad", f"not a finite number: {raw}")
        value = raw
    elif kind in _PLAIN:
        value = raw
    else:
        value, problem = _convert(raw)
        if problem is not None:
            return Sample(machine, tag.name, None, ts, "bad", problem)
    if tag.scaled and kind is not bool and isinstance(value, int | float):
        value = value * tag.scale + tag.offset
    if code:
        quality: Quality = "uncertain" if code & _SEVERITY else "good"
        return Sample(machine, tag.name, value, ts, quality, status_name(code))
    return Sample(machine, tag.name, value, ts)


def _convert(raw: Any) -> tuple[Value, str | None]:
    """Values of the less common OPC UA types, or why they cannot be a sample."""
    if raw is None:
        return None, "null value"
    if isinstance(raw, bool | int | str):  # IntEnum and other subclasses
        return (
            bool(raw) if isinstance(raw, bool) else int(raw) if isinstance(raw, int) else str(raw)
        ), None
    if isinstance(raw, float):
        return (float(raw), None) if math.isfinite(raw) else (None, f"not a finite number: {raw}")
    if isinstance(raw, Enum):
        return int(raw.value) if isinstance(raw.value, int) else str(raw.value), None
    if isinstance(raw, ua.LocalizedText):
        return raw.Text or "", None
    if isinstance(raw, ua.QualifiedName):
        return raw.Name or "", None
    if isinstance(raw, datetime):
        return raw.isoformat(), None
    if isinstance(raw, list):
        return None, "arrays are not supported"
    return None, f"unsupported value type {type(raw).__name__}"
