"""The synthetic source: exact, seedable production numbers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from gateway.config import MachineConfig, SyntheticConnector
from gateway.events import CountData, DowntimeData, Draft
from gateway.synthetic import SyntheticMachine, run_synthetic

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def machine(**spec: object) -> MachineConfig:
    return MachineConfig(
        id="m1", area="a", line="l", connector=SyntheticConnector(type="synthetic", **spec)
    )


def test_parts_follow_the_cycle_time_exactly() -> None:
    m = machine(cycle_time_s=0.3, reject_ratio=0.1, seed=7)
    sim = SyntheticMachine(m, m.connector)  # type: ignore[arg-type]
    totals = []
    for i in range(100):
        [draft] = sim.interval(T0 + timedelta(seconds=i), T0 + timedelta(seconds=i + 1))
        assert isinstance(draft.data, CountData)
        assert draft.data.good + draft.data.reject == draft.data.total
        totals.append(draft.data.total)
    # 100 s at 0.3 s per part: 333 parts, none lost to rounding between intervals.
    assert sum(totals) == 333


def test_stops_make_downtime_with_matching_ids_and_no_parts() -> None:
    m = machine(cycle_time_s=1.0, stop_probability=1.0, seed=3)
    sim = SyntheticMachine(m, m.connector)  # type: ignore[arg-type]
    events: list[Draft] = []
    for i in range(200):
        events += sim.interval(T0 + timedelta(seconds=i), T0 + timedelta(seconds=i + 1))
    started = [e.data for e in events if e.type == "downtime.started"]
    ended = [e.data for e in events if e.type == "downtime.ended"]
    assert started and len(ended) >= len(started) - 1
    for s, e in zip(started, ended, strict=False):
        assert isinstance(s, DowntimeData) and isinstance(e, DowntimeData)
        assert s.downtime_id == e.downtime_id and e.start == s.start
        assert e.duration_s == (e.end - e.start).total_seconds()  # type: ignore[operator]
    made = sum(e.data.total for e in events if isinstance(e.data, CountData))
    assert made < 200  # stopped time made nothing


async def test_run_stops_after_the_configured_number_of_events() -> None:
    seen: list[Draft] = []

    async def emit(drafts: Sequence[Draft]) -> None:
        seen.extend(drafts)

    await asyncio.wait_for(
        run_synthetic([machine(count_interval_s=0.001, events=25)], emit), timeout=5
    )
    assert len(seen) == 25
