"""DowntimeTracker: downtimes follow the published state; micro-stops, reasons, news, splits.

Each case is a sequence of published buckets (at seconds) and what was published."""

from __future__ import annotations

import pytest

from gateway.events import DowntimeData, Draft
from rules.downtime_tracker import DowntimeTracker
from rules.drafts import Drafts
from rules.reasons import Reason

JAM = Reason("101", "Film jam", "material")
SETUP = Reason("setup", "Changeover", "setup", source="changeover")


def tracker(
    min_state_s: float = 0.0, micro_stop_s: float = 30.0, reason: Reason | None = JAM
) -> tuple[DowntimeTracker, list[Draft], list[float]]:
    out: list[Draft] = []
    now = [0.0]
    t = DowntimeTracker(
        "m",
        Drafts("a", "l", "m", out),
        min_state_s=min_state_s,
        micro_stop_s=micro_stop_s,
        micro_loss="performance",
        external_loss="performance",
        resolve=lambda changeover: SETUP if changeover else reason,
        moment=lambda: ("WO-1", "s-1", now[0]),
    )
    return t, out, now


def seen(out: list[Draft]) -> list[tuple[str, float, bool | None, str | None, str]]:
    """(event, at, micro, category, loss) of each draft."""
    result = []
    for d in out:
        data = d.data
        assert isinstance(data, DowntimeData)
        result.append((d.type, d.ts.timestamp(), data.micro_stop, data.category, data.loss))
    return result


CASES = [
    (
        "a short stop is a micro-stop, charged to performance",
        [(10, "down"), (20, "running")],
        [
            ("downtime.started", 10, None, "material", "availability"),
            ("downtime.ended", 20, True, "material", "performance"),
        ],
    ),
    (
        "a long one is not",
        [(10, "down"), (50, "running")],
        [
            ("downtime.started", 10, None, "material", "availability"),
            ("downtime.ended", 50, False, "material", "availability"),
        ],
    ),
    (
        "idle inside a stop continues it; a chain is one stop for the micro rule",
        [(10, "down"), (15, "idle"), (20, "changeover"), (60, "running")],
        [
            ("downtime.started", 10, None, "material", "availability"),
            ("downtime.ended", 20, False, "material", "availability"),
            ("downtime.started", 20, None, "changeover", "availability"),
            ("downtime.ended", 60, False, "changeover", "availability"),
        ],
    ),
    (
        "starved is a stop caused upstream: never micro, charged to performance",
        [(10, "starved"), (15, "running")],
        [
            ("downtime.started", 10, None, "starved", "performance"),
            ("downtime.ended", 15, False, "starved", "performance"),
        ],
    ),
    (
        "out of sight: suspended, and ended when last seen (never micro)",
        [(10, "down"), (12, "unknown"), (40, "running")],
        [
            ("downtime.started", 10, None, "material", "availability"),
            ("downtime.ended", 12, False, "material", "availability"),
        ],
    ),
    (
        "seen down again with the same reason after an outage: the same downtime",
        [(10, "down"), (12, "unknown"), (40, "down"), (45, "running")],
        [
            ("downtime.started", 10, None, "material", "availability"),
            ("downtime.ended", 45, False, "material", "availability"),
        ],
    ),
]


@pytest.mark.parametrize(("steps", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_downtimes_follow_the_published_state(
    steps: list[tuple[float, str]], want: list[tuple[str, float, bool | None, str, str]]
) -> None:
    t, out, now = tracker()
    for at, bucket in steps:
        now[0] = at
        t.follow(at, bucket)
    assert seen(out) == want


def test_news_once_it_has_lasted_min_state_s_and_shorter_ones_never() -> None:
    t, out, now = tracker(min_state_s=5.0)
    now[0] = 10.0
    t.follow(10.0, "down")
    assert out == [] and t.announce_due == 15.0
    assert t.last_id[1] == 1
    now[0] = 12.0
    t.follow(12.0, "running")  # 2 s: never a downtime; its id is free again
    assert out == [] and t.open is None and t.last_id[1] == 0
    now[0] = 30.0
    t.follow(30.0, "down")
    now[0] = 35.0
    t.announce()  # lasted min_state_s: news, dated from its start
    assert [(d.type, d.ts.timestamp()) for d in out] == [("downtime.started", 30.0)]
    assert out[0].data.downtime_id == "m-19700101T000030000Z"  # type: ignore[union-attr]


def test_a_reason_changed_is_an_update_and_a_plc_reason_is_kept() -> None:
    reasons: list[Reason | None] = [None]
    t, out, _ = tracker()
    t.resolve = lambda changeover: reasons[0]
    t.follow(10.0, "down")
    reasons[0] = Reason("tool_change", "Tool change", "setup", source="rule")
    t.reason_changed(11.0)
    reasons[0] = JAM
    t.reason_changed(12.0)
    reasons[0] = Reason("tool_change", "Tool change", "setup", source="rule")
    t.reason_changed(13.0)  # a rule never overrides the PLC's first-out
    reasons[0] = None
    t.reason_changed(14.0)  # the PLC cleared its first-out: the reason stays
    assert [(d.type, d.data.reason_code) for d in out] == [  # type: ignore[union-attr]
        ("downtime.started", None),
        ("downtime.updated", "tool_change"),
        ("downtime.updated", "101"),
    ]


def test_a_boundary_splits_the_downtime_and_carries_its_reason() -> None:
    t, out, _ = tracker()
    t.follow(10.0, "down")
    carried = t.cut(20.0)
    assert carried is not None and t.open is None
    t.resume(20.0, "down", carried)
    assert t.open is not None and t.open.reason == JAM and t.open.start == 20.0
    assert [(d.type, d.ts.timestamp()) for d in out] == [
        ("downtime.started", 10.0),
        ("downtime.ended", 20.0),
        ("downtime.started", 20.0),
    ]
    assert out[1].data.micro_stop is False  # type: ignore[union-attr]
