"""`mesgw replay`: recorded raw samples through candidate rules, printed, never stored."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.events import Draft
from gateway.pipeline import build_rules
from gateway.samples import Logged, read_log
from rules.inputs import PlannedOrder
from rules.replay import replay


def _readings(paths: list[Path]) -> Iterator[Logged]:
    # Day files sort by name; within a file the log is in arrival order.
    for path in sorted(paths):
        yield from read_log(path)


def _schedule(path: Path | None) -> list[PlannedOrder]:
    if path is None:
        return []
    from gateway.orders.schedule import read_schedule

    return read_schedule(path)


def _event(draft: Draft) -> dict[str, Any]:
    return {
        "type": draft.type,
        "ts": draft.ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "machine": draft.machine,
        "order": draft.order,
        "shift": draft.shift,
        "data": draft.data.model_dump(mode="json"),
    }


def cmd_replay(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    engine = build_rules(settings)
    until = None
    if args.until:
        until = datetime.fromisoformat(args.until)
        if until.utcoffset() is None:
            print("mesgw: --until needs a time zone, e.g. 2026-11-22T14:00:00Z", file=sys.stderr)
            return 2
    result = replay(_readings(args.files), engine, planned=_schedule(args.schedule), until=until)
    if args.events is not None:
        with args.events.open("w", encoding="utf-8") as fh:
            for draft in result.drafts:
                fh.write(json.dumps(_event(draft), separators=(",", ":")) + "\n")
    if args.json:
        print(json.dumps(result.summary.to_json(), indent=2))
    else:
        print(result.summary.render())
        print(f"\n{len(result.drafts)} events; nothing was stored or published")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="run recorded samples through (candidate) rules and print counts and downtime",
        description=__doc__,
    )
    p.add_argument("files", type=Path, nargs="+", help="sample log files (samples-*.jsonl)")
    p.add_argument("--config", type=Path, required=True, help="the candidate configuration")
    p.add_argument("--schedule", type=Path, help="a schedule CSV to plan before replaying")
    p.add_argument("--until", help="let time run to this instant (ISO-8601 with zone)")
    p.add_argument("--events", type=Path, help="also write the resulting events as JSON lines")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_replay)
