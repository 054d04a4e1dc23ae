"""The demo's last word: the simulator's truth against the database, per machine and order.

    .venv/bin/python tools/demo_truth.py TRUTH.json DSN

Prints one line per machine and work order (made by the line, counted in the store, held
for the clerk) and exits 1 when a count differs, saying why when the store knows (held
counts, flagged records).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import asyncpg


async def compare(truth: dict, dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT machine, coalesce(order_id, '') AS order_id, sum(good)::bigint AS good,"
            " sum(reject)::bigint AS reject FROM counts GROUP BY 1, 2"
        )
        held = await conn.fetch(
            "SELECT machine, coalesce(order_id, '') AS order_id, sum(claimed)::bigint AS n"
            " FROM held_counts GROUP BY 1, 2"
        )
    finally:
        await conn.close()
    stored = {(r["machine"], r["order_id"]): (r["good"], r["reject"]) for r in rows}
    holds = {(r["machine"], r["order_id"]): r["n"] for r in held}
    keys = {
        (m, o) for m, t in truth["machines"].items() for o, made in t["orders"].items() if made
    } | set(stored)
    bad = 0
    print(f"{'machine':<12} {'order':<12} {'made good/reject':>18} {'stored':>14} {'held':>6}")
    for machine, order in sorted(keys):
        made = truth["machines"].get(machine, {}).get("orders", {}).get(order, {})
        want = (made.get("good", 0), made.get("reject", 0))
        got = stored.get((machine, order), (0, 0))
        mark = "ok" if want == got else "DIFFERS"
        bad += want != got
        print(
            f"{machine:<12} {order or '(no order)':<12} {want[0]:>11}/{want[1]:<6}"
            f" {got[0]:>7}/{got[1]:<6} {holds.get((machine, order), 0):>6}  {mark}"
        )
    if bad:
        print(f"{bad} counts differ from the truth: see held counts (mesgw counts held) and")
        print("flagged records; parts the gateway could not vouch for are held, never guessed.")
        return 1
    print("every count matches the simulator's truth")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(compare(json.loads(Path(sys.argv[1]).read_text()), sys.argv[2])))
