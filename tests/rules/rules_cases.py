"""Data-driven rules cases: `cases/<name>/{config.toml, input.jsonl, expected.jsonl}`.

`config.toml` is a gateway configuration (parsed by `gateway.config`). `input.jsonl` holds
readings in the sample-log format (`gateway.samples`), plus directives for the harness:

    {"restart": "<ts>"}              the gateway restarts: snapshot → JSON → a fresh engine
                                     restored from it; ticks resume at <ts>
    {"until": "<ts>"}                let time run to <ts> (ticks) at the end
    {"plan": [{"order_id": …}, …]}   a schedule import

Ticks are rebuilt from the readings' timestamps, one per whole second, as the daemon sends
them. `expected.jsonl` lists every draft in order; a line names only the fields it checks
(the regenerated files name them all). Regenerate after a deliberate change with
`.venv/bin/python tests/rules/regen_cases.py [name …]` — and read the result: the committed
expectations are checked by hand against the domain rules, not taken from the engine.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.events import Draft
from gateway.samples import Logged, from_line
from rules.engine import Engine
from rules.inputs import CommandResult, PlannedOrder
from rules.replay import replay

CASES = Path(__file__).resolve().parent / "cases"


@dataclass
class Run:
    drafts: list[Draft]
    results: list[CommandResult]
    engine: Engine


def case_names() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if (p / "input.jsonl").is_file())


def _segments(path: Path) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        record = json.loads(line)
        try:
            if "restart" in record:
                yield "restart", datetime.fromisoformat(record["restart"])
            elif "until" in record:
                yield "until", datetime.fromisoformat(record["until"])
            elif "plan" in record:
                yield "plan", [PlannedOrder(**o) for o in record["plan"]]
            else:
                yield "reading", from_line(line)
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{path}:{number}: {err}") from err


def run_case(name: str) -> Run:
    """Feed a case's input through a fresh engine built from its config."""
    directory = CASES / name
    settings = load_config(directory / "config.toml")
    engine = Engine.from_settings(settings)
    drafts: list[Draft] = []
    results: list[CommandResult] = []
    batch: list[Logged] = []

    def flush(until: datetime | None = None, last: bool = False) -> None:
        result = replay(batch, engine, until=until, flush=last)
        drafts.extend(result.drafts)
        results.extend(result.results)
        batch.clear()

    for kind, item in _segments(directory / "input.jsonl"):
        if kind == "reading":
            batch.append(item)
        elif kind == "plan":
            flush()
            engine.plan(item)
        elif kind == "until":
            flush(until=item)
        else:
            flush()
            saved = json.loads(json.dumps(engine.snapshot()))
            engine = Engine.from_settings(settings)
            engine.restore(saved)
            # The restarted gateway's first tick: the time it is running again.
            flush(until=item)
    flush(last=True)
    for d in drafts:  # every draft must make a valid event of the contract
        d.seal(event_id=uuid.uuid4(), seq=1, gateway="gw", site="s")
    return Run(drafts, results, engine)


def as_record(d: Draft) -> dict[str, Any]:
    """A draft as an expected.jsonl line: envelope fields, then every data field."""
    return {
        "type": d.type,
        "ts": _iso(d.ts),
        "machine": d.machine,
        "order": d.order,
        "shift": d.shift,
        "data": d.data.model_dump(mode="json"),
    }


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_expected(name: str) -> list[dict[str, Any]]:
    path = CASES / name / "expected.jsonl"
    return [
        json.loads(line)
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("//")
    ]


def mismatches(expected: list[dict[str, Any]], drafts: list[Draft]) -> list[str]:
    """Field-by-field differences (only the fields each expected line names)."""
    problems = []
    actual = [as_record(d) for d in drafts]
    for i, (want, got) in enumerate(zip(expected, actual, strict=False), start=1):
        for key, value in want.items():
            if key == "data":
                for field, v in value.items():
                    if _norm(got["data"].get(field, "<missing>")) != _norm(v):
                        problems.append(
                            f"event {i} ({got['type']}) data.{field}: "
                            f"expected {v!r}, got {got['data'].get(field, '<missing>')!r}"
                        )
            elif _norm(got.get(key)) != _norm(value):
                problems.append(
                    f"event {i} ({got['type']}) {key}: expected {value!r}, got {got.get(key)!r}"
                )
    if len(expected) != len(actual):
        problems.append(f"{len(expected)} events expected, {len(actual)} made")
        for extra in actual[len(expected) :]:
            problems.append(f"  extra: {json.dumps(extra)}")
    return problems


def _norm(value: Any) -> Any:
    # Timestamps compare as instants: "…Z" and "…+00:00" are the same time.
    if isinstance(value, str) and len(value) >= 20 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value
