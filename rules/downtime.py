"""A downtime as the rules hold it while open, and its ids.

Ids are `<machine>-<start, UTC, YYYYMMDDTHHMMSSfffZ>` (a suffix `-2`, `-3` … for a second
downtime starting in the same millisecond): stable across restarts because they come from
the data, and the same again when the samples are replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rules.calendar import ms_of, ms_stamp
from rules.reasons import Reason


@dataclass(slots=True)
class Downtime:
    id: str
    kind: str  # down | changeover | starved | blocked
    start: float
    order: str | None
    shift: str | None
    reason: Reason | None
    suspended: float | None = None  # when the machine went out of sight (unknown)
    # Published yet? A downtime is news once it has lasted min_state_s; shorter ones (a
    # changeover between a stop and a start of orders, say) are never published.
    announced: bool = True
    unseen: bool = False  # partly out of sight (or first seen after it): never a micro-stop

    def to_json(self) -> dict[str, Any]:
        r = self.reason
        return {
            "id": self.id,
            "kind": self.kind,
            "start": self.start,
            "order": self.order,
            "shift": self.shift,
            "suspended": self.suspended,
            "announced": self.announced,
            "unseen": self.unseen,
            "reason": None
            if r is None
            else {
                "code": r.code,
                "text": r.text,
                "category": r.category,
                "planned": r.planned,
                "loss": r.loss,
                "source": r.source,
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Downtime:
        r = data.get("reason")
        reason = None
        if r is not None:
            reason = Reason(
                code=str(r["code"]),
                text=r.get("text"),
                category=r.get("category"),
                planned=bool(r.get("planned", False)),
                loss=str(r.get("loss", "availability")),
                source=str(r.get("source", "plc")),
            )
        suspended = data.get("suspended")
        return cls(
            id=str(data["id"]),
            kind=str(data["kind"]),
            start=float(data["start"]),
            order=data.get("order"),
            shift=data.get("shift"),
            reason=reason,
            suspended=None if suspended is None else float(suspended),
            announced=bool(data.get("announced", True)),
            unseen=bool(data.get("unseen", False)),
        )


def downtime_id(machine: str, t: float, last: tuple[int, int]) -> tuple[str, tuple[int, int]]:
    """The id of a downtime starting at t, and the (ms, n) to remember for the next one.

    The millisecond is the one the event's `start` shows (cut, not rounded): id = its start.
    """
    ms = ms_of(t)
    n = last[1] + 1 if ms == last[0] else 1
    text = f"{machine}-{ms_stamp(t)}"
    return (text if n == 1 else f"{text}-{n}"), (ms, n)
