"""`mesgw counts held`: the counter changes the rules held back, for a clerk to judge.

A held count (domain: "Held counts") is a spike faster than the machine can make parts, or a
decrease that is neither a provable wrap nor a reset to zero. Its parts are in no total and in
no OEE figure; this command lists them from the store's `held_counts` table with the raw
values, the claim and the plausible maximum, so the clerk can see what the machine reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.config import DEFAULT_CONFIG, load_config
from gateway.errors import GatewayError
from gateway.logging import configure
from gateway.report import fetch_rows, iso, jsonable, parse_time

HELD_SQL = """
SELECT held_id, site, area, line, machine, order_id, shift_id, counter, role,
       old_raw, new_raw, claimed, plausible_max, reason, seen_from, ts,
       decision, accepted, decided_by
FROM held_counts_shown
WHERE ($1::timestamptz IS NULL OR ts >= $1) AND ($2::timestamptz IS NULL OR ts < $2)
  AND ($3::text IS NULL OR machine = $3) AND ($4::text IS NULL OR order_id = $4)
ORDER BY ts, held_id
"""

_REASONS = {
    "spike": "faster than the machine can make parts",
    "decrease": "went down: neither a wrap nor a reset to zero",
}


def _decision(r: dict[str, Any]) -> str:
    if r["decision"] == "pending":
        return "pending: accept or reject it with `mesgw correct held`"
    return f"{r['decision']} by {r['decided_by']}: {r['accepted']} parts counted"


def render(rows: Sequence[dict[str, Any]]) -> str:
    """One block per held count: where, what the counter showed, and why it was held."""
    out = []
    for r in rows:
        most = "unknown" if r["plausible_max"] is None else str(r["plausible_max"])
        out.append(
            f"{r['held_id']}  {r['site']}/{r['area']}/{r['line']}/{r['machine']}"
            f"  order {r['order_id'] or '(none)'}  shift {r['shift_id'] or '(none)'}\n"
            f"  {r['counter']} ({r['role']}): {r['old_raw']} at {iso(r['seen_from'])}"
            f" -> {r['new_raw']} at {iso(r['ts'])}\n"
            f"  claims {r['claimed']} parts, plausible at most {most};"
            f" held: {r['reason']} ({_REASONS[r['reason']]})\n"
            f"  {_decision(r)}"
        )
    return "\n".join(out)


def cmd_held(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    configure(settings.logging.level, settings.logging.format, stream="stderr")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise GatewayError(f"--to ({iso(args.end)}) must be after --from ({iso(args.start)})")
    rows = asyncio.run(
        fetch_rows(
            settings.store,
            HELD_SQL,
            (args.start, args.end, args.machine, args.order),
            "listing held counts",
        )
    )
    if args.json:
        print(json.dumps([{k: jsonable(v) for k, v in r.items()} for r in rows], indent=2))
        return 0
    if not rows:
        print("no held counts")
        return 0
    print(render(rows))
    pending = [r for r in rows if r["decision"] == "pending"]
    not_counted = sum(r["claimed"] for r in pending) + sum(
        r["claimed"] - r["accepted"] for r in rows if r["decision"] != "pending"
    )
    print(f"{len(rows)} held count(s), {len(pending)} pending; {not_counted} parts in no total")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `counts held` to the `mesgw` command line."""
    counts = sub.add_parser("counts", help="counter records in the store")
    counts_sub = counts.add_subparsers(dest="counts_command", required=True)
    description = (
        "List the counter changes the rules held back (spikes, unexplained decreases): raw old"
        " and new values, the claimed parts and the plausible maximum. Their parts are in no"
        " total until a clerk accepts them. Times without a zone are UTC."
    )
    held = counts_sub.add_parser("held", help="list held counts", description=description)
    held.add_argument("--machine", help="only this machine id")
    held.add_argument("--order", help="only this work order")
    held.add_argument("--from", dest="start", metavar="TIME", type=parse_time)
    held.add_argument("--to", dest="end", metavar="TIME", type=parse_time)
    held.add_argument("--json", action="store_true", help="rows as JSON")
    held.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"configuration file (default {DEFAULT_CONFIG})",
    )
    held.set_defaults(func=cmd_held)
