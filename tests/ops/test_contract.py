"""The shipped contract (gateway/schemas/CONTRACT.md) says what the code does, and the
documentation never points outside the repository."""

from __future__ import annotations

import re
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.events import (
    DATA_MODELS,
    EVENT_TOPIC_SUFFIXES,
    EventType,
    StateBucket,
    publications,
    status_topic,
    uuid7,
)
from gateway.testing import count_event

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "gateway" / "schemas" / "CONTRACT.md"
PREFIX = "{p}"
ROOT_TOPIC = "{p}/{site}/{area}/{line}/{machine}"


def topic_table() -> dict[str, str]:
    """topic → the retained column, from the contract's topic table."""
    rows = {}
    for line in CONTRACT.read_text().splitlines():
        found = re.match(r"^\| `(\{p\}/[^`]+)` \| ([^|]+) \|", line)
        if found:
            rows[found.group(1)] = found.group(2).strip()
    return rows


def sample_event(kind: str) -> object:
    base = count_event(seq=1, ts=datetime(2026, 1, 1, tzinfo=UTC), site="{site}", area="{area}")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    data: dict[str, object] = {
        "count": base.data.model_dump(),
        "count.held": {
            "held_id": "m-good-1", "counter": "good", "role": "good_count", "old_raw": 1,
            "new_raw": 9, "claimed": 8, "reason": "spike", "start": now, "end": now,
        },
        "state": {"bucket": "running", "since": now},
        "downtime.started": {"downtime_id": "d1", "start": now},
        "downtime.updated": {"downtime_id": "d1", "start": now},
        "downtime.ended": {"downtime_id": "d1", "start": now, "end": now + timedelta(seconds=5)},
        "order.started": {"order_id": "WO-1", "status": "running"},
        "order.ended": {"order_id": "WO-1", "status": "completed"},
        "shift.started": {
            "shift_id": "s-1", "calendar": "default", "start": now,
            "end": now + timedelta(hours=8),
        },
    }[kind]  # fmt: skip
    model = DATA_MODELS[kind]
    return base.model_copy(
        update={
            "type": kind,
            "data": model.model_validate(data),
            "event_id": uuid7(),
            "line": "{line}",
            "machine": "{machine}",
        }
    )


def test_every_event_type_goes_where_the_contract_says() -> None:
    table = topic_table()
    assert table, "no topic table in CONTRACT.md"
    seen: dict[str, set[bool]] = {}
    for kind in typing.get_args(EventType):
        for pub in publications(sample_event(kind), PREFIX):  # type: ignore[arg-type]
            seen.setdefault(pub.topic, set()).add(pub.retain)
    for topic, flags in seen.items():
        assert topic in table, f"{topic} is published but not in the contract"
        documented = {"yes": {True}, "no": {False}, "yes / no": {True, False}}[table[topic]]
        assert flags == documented, f"{topic}: retained {flags}, contract says {table[topic]}"
    machine_topics = {t for t in table if t.startswith(ROOT_TOPIC) and "/cmd/" not in t}
    assert machine_topics == set(seen), "the contract lists topics nothing publishes"
    status = status_topic(PREFIX, "{site}", "{gateway_id}")
    assert table[status] == "yes"
    for suffix in EVENT_TOPIC_SUFFIXES:
        assert f"{ROOT_TOPIC}/{suffix}" in table


def test_every_event_type_and_state_bucket_is_described() -> None:
    text = CONTRACT.read_text()
    for kind in typing.get_args(EventType):
        assert f"`{kind}`" in text, kind
        for field in DATA_MODELS[kind].model_fields:
            assert f"`{field}`" in text, f"{kind}.{field} is not described"
    for bucket in typing.get_args(StateBucket):
        assert f"`{bucket}`" in text, bucket


def test_the_schemas_the_contract_names_exist() -> None:
    text = CONTRACT.read_text()
    named = set(re.findall(r"`(mes\.[a-z-]+-\d+\.json)`", text))
    shipped = {p.name for p in (ROOT / "gateway").rglob("mes.*.json")}
    assert named == shipped


# Links to what `make test` writes, which a fresh clone has only after its first run.
GENERATED = (".cache/screenshots/",)


def test_documentation_never_points_outside_the_repository() -> None:
    for doc in (ROOT / "README.md", ROOT / "deploy" / "README.md", CONTRACT):
        text = doc.read_text()
        assert "shared/design" not in text, doc
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            assert (doc.parent / target).resolve().is_relative_to(ROOT), (doc, target)
            if target.startswith(GENERATED):
                continue  # written by the test run (the browser tests' screenshots)
            assert (doc.parent / target).exists(), (doc, target)
