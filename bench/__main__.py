"""`make bench`: every benchmark's figures in one table, each beside its target.

`python -m bench` runs them all (about 12 minutes); `python -m bench modbus` or
`python -m bench opcua` (or several names) only those.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import Callable

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

Rows = list[dict[str, object]]
BENCHES: dict[str, Callable[[], Rows]] = {
    "rules": bench_rules.run,
    "outbox": bench_outbox.run,
    "store": lambda: asyncio.run(bench_store.run()),
    "review": lambda: asyncio.run(bench_review.run()),
    "pipeline": lambda: asyncio.run(bench_pipeline.run()),
    "modbus": bench_modbus.run,
    "opcua": bench_opcua.run,
}


def machine() -> str:
    """The machine the figures are from: host, CPU model and count, memory, load."""
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(
                (line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")),
                model,
            )
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as fh:
            total_kb = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
        memory = f", {total_kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    load = ", load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return (
        f"{platform.node()}: {os.cpu_count()} x {model}{memory}{load}; "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("only", nargs="*", help=f"some of {', '.join(BENCHES)}; default: all")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    configure("warning")  # the table is the output; the components' info lines are noise
    print(f"mes-gateway benchmarks on {machine()}", flush=True)
    started = time.monotonic()
    rows: Rows = []
    for name, bench in BENCHES.items():
        if not args.only or name in args.only:
            print(f"... {name} ({time.monotonic() - started:,.0f} s)", file=sys.stderr, flush=True)
            rows += bench()
    print(render(rows))
    print(f"\n{time.monotonic() - started:,.0f} s; load at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
