"""The state debouncer: a change of the machine's own state is a candidate until it has
lasted `min_state_s`, then confirmed and dated from its start."""

from __future__ import annotations

import math

from rules.config import Bucket
from rules.drafts import StateTriple
from rules.interval import CountInterval
from rules.parts import Parts

INF = math.inf


class Candidate:
    """A state the machine seems to be in since `since`, not yet for `min_state_s`; the
    parts counted after `split` are held apart, so the count interval can be cut exactly
    where the state began."""

    __slots__ = ("bucket", "code", "parts", "reason", "since", "split")

    def __init__(self, state: StateTriple, since: float, split: float) -> None:
        self.bucket, self.code, self.reason = state
        self.since = since
        self.split = split
        self.parts = Parts()


class StateDebouncer:
    """Owns the machine's own confirmed state (`bucket`, `code`, `reason`: before calendar
    and changeover) and the `candidate` that may replace it, decided at `due`."""

    __slots__ = ("bucket", "candidate", "code", "due", "interval", "min_state_s", "reason")

    def __init__(self, min_state_s: float, interval: CountInterval) -> None:
        self.min_state_s = min_state_s
        self.interval = interval  # where held parts go back to
        self.bucket: Bucket = "unknown"
        self.code: int | str | None = None
        self.reason: str | None = "no data yet"
        self.candidate: Candidate | None = None
        self.due = INF

    def consider(
        self, state: StateTriple, since: float, published_since: float, now: float
    ) -> None:
        """What the readings say the machine does since `since`: a new candidate, the same
        one going on, or the confirmed state after all (the candidate is dropped)."""
        candidate = self.candidate
        if state[0] == self.bucket:
            if candidate is not None:
                self.drop()
            return
        if candidate is not None:
            if candidate.bucket == state[0]:
                return
            self.drop()
        since = max(since, published_since)
        self.candidate = Candidate(state, since, max(since, self.interval.start))
        self.due = max(since + self.min_state_s, now)

    def drop(self) -> None:
        """Forget the candidate; the parts it held go back to the count interval."""
        candidate = self.candidate
        assert candidate is not None
        self.interval.parts.take(candidate.parts)
        self.candidate = None
        self.due = INF

    def confirm(self) -> Candidate:
        """The candidate has lasted: it is the machine's state now."""
        candidate = self.candidate
        assert candidate is not None
        self.candidate = None
        self.due = INF
        self.bucket, self.code, self.reason = candidate.bucket, candidate.code, candidate.reason
        return candidate

    def forget(self, reason: str) -> None:
        """Nobody knows what the machine does (link down, gateway stopped)."""
        if self.candidate is not None:
            self.drop()
        self.bucket, self.code, self.reason = "unknown", None, reason

    @property
    def state(self) -> StateTriple:
        return self.bucket, self.code, self.reason

    def parts_at(self, t: float) -> Parts:
        """Where parts counted at t go: held by the candidate from its split, else the interval."""
        candidate = self.candidate
        if candidate is not None and t >= candidate.split:
            return candidate.parts
        return self.interval.parts

    def release(self, t: float) -> None:
        """The count interval closes at t: the parts the candidate holds from before t go
        with it, and the candidate holds on from t."""
        candidate = self.candidate
        if candidate is not None and t > candidate.split:
            self.interval.parts.take(candidate.parts)
            candidate.parts.clear()
            candidate.split = t
