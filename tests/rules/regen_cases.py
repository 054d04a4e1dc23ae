"""Rewrite cases/<name>/expected.jsonl from what the engine makes now — for review, not truth.

    .venv/bin/python tests/rules/regen_cases.py [name …]   (default: every case)

Read every regenerated line against the domain rules before committing it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rules_cases import CASES, as_record, case_names, run_case


def main(names: list[str]) -> int:
    for name in names or case_names():
        run = run_case(name)
        lines = [json.dumps(as_record(d), ensure_ascii=False) for d in run.drafts]
        (CASES / name / "expected.jsonl").write_text("\n".join(lines) + "\n")
        refused = [r for r in run.results if not r.ok]
        print(f"{name}: {len(lines)} events" + (f", {len(refused)} refused" if refused else ""))
        for r in refused:
            print(f"  refused: {r.machine} {r.order_id}: {r.error}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
