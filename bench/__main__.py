"""`make bench`: every benchmark's figures in one table, each beside its target."""

from __future__ import annotations

import asyncio
import platform
import sys

from bench import (
    bench_modbus,
    bench_opcua,
    bench_outbox,
    bench_pipeline,
    bench_review,
    bench_rules,
    bench_store,
)
from bench.table import render
from gateway.logging import configure


def main() -> int:
    configure("warning")  # the table is the output; the components' info lines are noise
    print(
        f"mes-gateway benchmarks on {platform.node()} ({platform.processor() or 'cpu'}), "
        f"Python {platform.python_version()}",
        flush=True,
    )
    rows: list[dict[str, object]] = []
    rows += bench_rules.run()
    rows += bench_outbox.run()
    rows += asyncio.run(bench_store.run())
    rows += asyncio.run(bench_review.run())
    rows += asyncio.run(bench_pipeline.run())
    rows += bench_modbus.run()
    rows += bench_opcua.run()
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
