"""`make bench`: every benchmark's figures in one table, each beside its target."""

from __future__ import annotations

import asyncio
import platform
import sys

from bench import bench_outbox, bench_pipeline, bench_store
from gateway.logging import configure


def _table(rows: list[dict[str, object]]) -> str:
    width = max(len(str(r["bench"])) for r in rows)
    lines = [f"{'benchmark':<{width}}  {'value':>12}  {'unit':<9} target", "-" * (width + 40)]
    for r in rows:
        value = r["value"]
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        lines.append(f"{r['bench']!s:<{width}}  {shown:>12}  {r['unit']!s:<9} {r['target']}")
    return "\n".join(lines)


def main() -> int:
    configure("warning")  # the table is the output; the components' info lines are noise
    print(
        f"mes-gateway benchmarks on {platform.node()} ({platform.processor() or 'cpu'}), "
        f"Python {platform.python_version()}",
        flush=True,
    )
    rows: list[dict[str, object]] = []
    rows += bench_outbox.run()
    rows += asyncio.run(bench_store.run())
    rows += asyncio.run(bench_pipeline.run())
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
