"""What every connector yields and the rules take: samples of tag values, and link up/down
transitions of a machine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Quality = Literal["good", "uncertain", "bad"]
Value = bool | int | float | str | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One tag's value at one time, as read from the machine.

    `ts` is the source timestamp when the server gives one (OPC UA), else the time of
    acquisition (Modbus: when the response arrived); always timezone-aware UTC. A value
    that could not be read or decoded has quality "bad", value None and `status` saying why.
    """

    machine: str
    tag: str
    value: Value
    ts: datetime
    quality: Quality = "good"
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """The connector's link to a machine went up or down at `ts` (no data while down)."""

    machine: str
    up: bool
    ts: datetime
    error: str | None = None


Reading = Sample | Link
