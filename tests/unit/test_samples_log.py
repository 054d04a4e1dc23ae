"""The raw-sample log: round trip, report by exception, day files, pruning, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.sample import Link, Sample
from gateway.samples import SampleLog, SampleLogError, _Lines, from_line, read_log, to_line
from rules.inputs import OrderCommand

T0 = datetime(2026, 11, 22, 23, 59, 59, 500_000, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_every_kind_of_reading_round_trips() -> None:
    items = [
        Sample("m1", "good", 65535, at(0)),
        Sample("m1", "speed", 12.5, at(0)),
        Sample("m1", "order", "WO-7", at(0)),
        Sample("m1", "running", True, at(0)),
        Sample("m1", "good", None, at(1), quality="bad", status="BadNodeIdUnknown"),
        Link("m1", False, at(2), error="connection refused"),
        Link("m1", True, at(3)),
        OrderCommand("m1", "start", at(4), "http", order_id="WO-8", quantity=100),
        OrderCommand("m1", "stop", at(5), "cli"),
    ]
    assert [from_line(to_line(i)) for i in items] == items
    assert type(from_line(to_line(items[3])).value) is bool  # type: ignore[union-attr]


def test_log_keeps_changes_only_and_splits_days(tmp_path: Path) -> None:
    log = SampleLog(tmp_path)
    log.add([Sample("m1", "good", 1, at(0)), Sample("m1", "good", 1, at(0.2))])
    log.add([Sample("m1", "good", True, at(0.3))])  # same as 1 to ==, a different reading
    log.add([Sample("m1", "good", 1, at(0.4), quality="uncertain")])
    log.add([Link("m1", False, at(0.45)), Sample("m1", "good", 1, at(0.6))])  # new after gap
    assert log.flush() == 6  # the held 1 at 0.2 is logged before the change at 0.3
    # An unchanged reading is held back, and logged just before the next change: replay
    # then knows when the old value was last seen.
    log.add([Sample("m1", "good", 1, at(0.7)), Sample("m1", "good", 1, at(0.8))])
    assert log.flush() == 0
    log.add([Sample("m1", "good", 2, at(0.9))])
    assert log.flush() == 2
    assert log.flush() == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["samples-20261122.jsonl", "samples-20261123.jsonl"]
    day1 = list(read_log(tmp_path / files[0]))
    day2 = list(read_log(tmp_path / files[1]))
    assert [getattr(i, "value", None) for i in day1] == [1, 1, True, 1, None]
    assert day2 == [
        Sample("m1", "good", 1, at(0.6)),
        Sample("m1", "good", 1, at(0.8)),
        Sample("m1", "good", 2, at(0.9)),
    ]


def test_maintain_flushes_and_prunes_once_a_day(tmp_path: Path) -> None:
    log = SampleLog(tmp_path, keep_days=1)
    (tmp_path / "samples-20261101.jsonl").write_text("")
    log.add([Sample("m1", "good", 1, at(0))])
    assert log.maintain(datetime(2026, 11, 22, 12, tzinfo=UTC)) == 1
    assert not (tmp_path / "samples-20261101.jsonl").exists()
    (tmp_path / "samples-20261102.jsonl").write_text("")
    log.maintain(datetime(2026, 11, 22, 13, tzinfo=UTC))  # pruned already today
    assert (tmp_path / "samples-20261102.jsonl").exists()
    log.maintain(datetime(2026, 11, 23, 0, 1, tzinfo=UTC))
    assert not (tmp_path / "samples-20261102.jsonl").exists()


def test_prune_deletes_days_older_than_keep_days(tmp_path: Path) -> None:
    for day in ("20261101", "20261107", "20261108", "20261122"):
        (tmp_path / f"samples-{day}.jsonl").write_text("")
    (tmp_path / "notes.txt").write_text("kept")
    removed = SampleLog(tmp_path, keep_days=14).prune(datetime(2026, 11, 22, 12, tzinfo=UTC))
    # 14 days before 2026-11-22 is 2026-11-08: that day is still kept.
    assert sorted(p.name for p in removed) == ["samples-20261101.jsonl", "samples-20261107.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt",
        "samples-20261108.jsonl",
        "samples-20261122.jsonl",
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"machine":"m1","tag":"good","value":1}', "ts must be an ISO-8601 string"),
        ('{"ts":"2026-11-22T08:00:00","machine":"m1","tag":"g"}', "ts must carry a time zone"),
        ('{"ts":"2026-11-22T08:00:00Z","tag":"g"}', "machine must be a non-empty string"),
        ('{"ts":"2026-11-22T08:00:00Z","machine":"m","tag":"g","quality":"ok"}', "quality must"),
        ('{"ts":"2026-11-22T08:00:00Z","machine":"m","tag":"g","value":[1]}', "value must be"),
        ('{"ts":"2026-11-22T08:00:00Z","machine":"m","link":"sideways"}', "link must be"),
        ('{"ts":"2026-11-22T08:00:00Z","machine":"m","command":"pause"}', "command must be"),
        ("[1, 2]", "a line must be a JSON object"),
    ],
)
def test_bad_lines_name_file_line_and_problem(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "samples.jsonl"
    good = '{"ts":"2026-11-22T08:00:00Z","machine":"m","tag":"g","value":1}'
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(SampleLogError) as err:
        list(read_log(path))
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SampleLogError, match="cannot read"):
        list(read_log(tmp_path / "nope.jsonl"))


_zones = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-9.5))])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.builds(
            Sample,
            machine=st.text(min_size=1, max_size=8),
            tag=st.text(min_size=1, max_size=8),
            value=st.none()
            | st.booleans()
            | st.integers(-(2**70), 2**70)
            | st.floats()
            | st.text(max_size=6),
            ts=st.datetimes(
                min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=_zones
            ),
            quality=st.sampled_from(["good", "uncertain", "bad"]),
            status=st.none() | st.text(max_size=6),
        ),
        max_size=6,
    )
)
def test_the_fast_sample_lines_are_to_line_exactly(samples: list[Sample]) -> None:
    lines = _Lines()
    for sample in samples + samples:  # again: from the caches
        day = sample.ts.astimezone(UTC).strftime("%Y%m%d")
        assert lines(sample) == (day, to_line(sample))
