"""The golden replay: recorded sample logs through the rules, every event as a JSON line.

`golden/<name>/` holds a gateway config (`config.toml`), the sample log a run recorded
(`samples.jsonl.gz`: `make demo`'s, of 45 s and of 120 s; the end-to-end test's; a made-up
morning from `golden_plant.py`), optionally a `schedule.csv`, and what replaying them made
with the rules before they were split into parts (commit adea456): `events.jsonl.gz` (every
event, as `mesgw replay --events` writes them, then each command's reply) and
`snapshot.json` (the rules' saved state at the end).

Record again (only for a deliberate change of behaviour, and read the diff):
`.venv/bin/python tests/rules/golden_replay.py [--plant] [name …]`.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from gateway.config import load_config
from gateway.orders.schedule import read_schedule
from gateway.pipeline import build_rules
from gateway.replay import _event
from gateway.samples import from_line, to_line
from rules.replay import replay

GOLDEN = Path(__file__).resolve().parent / "golden"


def names() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "samples.jsonl.gz").is_file())


def run(name: str) -> tuple[str, str]:
    """(events, snapshot) of replaying `golden/<name>` through today's rules, as text."""
    directory = GOLDEN / name
    engine = build_rules(load_config(directory / "config.toml"))
    schedule = directory / "schedule.csv"
    planned = read_schedule(schedule) if schedule.is_file() else []
    with gzip.open(directory / "samples.jsonl.gz", "rt", encoding="utf-8") as fh:
        items = [from_line(line) for line in fh if line.strip()]
    result = replay(items, engine, planned=planned)
    lines = [json.dumps(_event(d), separators=(",", ":")) for d in result.drafts]
    lines += [
        json.dumps({"reply": [r.ok, r.machine, r.order_id, r.status, r.error]})
        for r in result.results
    ]
    snapshot = json.dumps(engine.snapshot(), indent=1, sort_keys=True)
    return "\n".join(lines) + "\n", snapshot + "\n"


def read(name: str) -> tuple[str, str]:
    directory = GOLDEN / name
    with gzip.open(directory / "events.jsonl.gz", "rt", encoding="utf-8") as fh:
        events = fh.read()
    return events, (directory / "snapshot.json").read_text(encoding="utf-8")


def record(name: str) -> None:
    events, snapshot = run(name)
    directory = GOLDEN / name
    with gzip.GzipFile(directory / "events.jsonl.gz", "wb", mtime=0) as fh:
        fh.write(events.encode())
    (directory / "snapshot.json").write_text(snapshot, encoding="utf-8")
    print(f"{name}: {events.count(chr(10))} lines")


def record_plant() -> None:
    from golden_plant import readings

    text = "".join(to_line(item) + "\n" for item in readings())
    with gzip.GzipFile(GOLDEN / "plant" / "samples.jsonl.gz", "wb", mtime=0) as fh:
        fh.write(text.encode())
    print(f"plant: {text.count(chr(10))} readings")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--plant" in args:
        args.remove("--plant")
        record_plant()
    for golden in args or names():
        record(golden)
