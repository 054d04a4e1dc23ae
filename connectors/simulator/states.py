"""PackML state codes in the two numberings PLCs use.

PackTags v3.0 (`StateCurrent`, also the `StateNumber` of OPC 30050's PackML state machine):
0 Undefined … 17 Complete. OPC 30060 (OPC UA for Tobacco Machine Communication) carries the
PackML states as its `StateEnumeration`, numbered from 0 Stopped to 16 Unholding, with no
Undefined. Names here are the PackML state names in lower case.
"""

from __future__ import annotations

from typing import Final, Literal

Numbering = Literal["packtags", "opc30060"]

PACKTAGS: Final[dict[str, int]] = {
    "undefined": 0,
    "clearing": 1,
    "stopped": 2,
    "starting": 3,
    "idle": 4,
    "suspended": 5,
    "execute": 6,
    "stopping": 7,
    "aborting": 8,
    "aborted": 9,
    "holding": 10,
    "held": 11,
    "unholding": 12,
    "suspending": 13,
    "unsuspending": 14,
    "resetting": 15,
    "completing": 16,
    "complete": 17,
}

OPC30060: Final[dict[str, int]] = {
    "stopped": 0,
    "resetting": 1,
    "idle": 2,
    "starting": 3,
    "execute": 4,
    "completing": 5,
    "complete": 6,
    "aborting": 7,
    "aborted": 8,
    "stopping": 9,
    "clearing": 10,
    "suspending": 11,
    "suspended": 12,
    "unsuspending": 13,
    "holding": 14,
    "held": 15,
    "unholding": 16,
}

TABLES: Final[dict[str, dict[str, int]]] = {"packtags": PACKTAGS, "opc30060": OPC30060}


MAX_CODE: Final = 32767  # int16 on Modbus, Int32 on OPC UA: the common range


def state_code(numbering: Numbering, state: int | str) -> int:
    """The code of a state given by PackML name, or a code as is (tests may script odd codes)."""
    if isinstance(state, str):
        table = TABLES[numbering]
        if state not in table:
            raise ValueError(f"no state {state!r} in {numbering} (one of {', '.join(table)})")
        return table[state]
    if not 0 <= state <= MAX_CODE:
        raise ValueError(f"a state code is 0..{MAX_CODE}")
    return state


def state_name(numbering: Numbering, code: int) -> str | None:
    """The PackML name of a code, None for a code outside the numbering."""
    for name, value in TABLES[numbering].items():
        if value == code:
            return name
    return None
