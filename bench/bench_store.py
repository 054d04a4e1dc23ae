"""Store write throughput on the local PostgreSQL: write_batch (COPY + one INSERT … SELECT per
batch) against the naive baseline of one INSERT and one commit per event, in the same run."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from datetime import timedelta

import asyncpg
from pydantic import SecretStr

from bench.table import render
from gateway.config import StoreSection
from gateway.events import now_utc
from gateway.store import Received, connect, migrate, write_batch, write_one_by_one
from gateway.testing import count_event, received, temporary_database

ADMIN_DSN = os.environ.get("MESGW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 2000
BATCHED_EVENTS = 60_000
# The baseline commits once per event; fewer events keep its run to a few seconds.
ONE_BY_ONE_EVENTS = 3_000
BATCH_TARGET = ">= 20000"
RATIO_TARGET = ">= 10"


def _received(n: int) -> list[Received]:
    now = now_utc()
    return [
        received(
            count_event(
                seq=i,
                ts=now - timedelta(milliseconds=n - i),
                machine=f"m{i % 50:02d}",
                good=7,
                order="o-4711",
                shift="early",
                gateway="bench",
                site="site",
                area="press",
            )
        )
        for i in range(n)
    ]


async def _batched_rate(conn: asyncpg.Connection, events: Sequence[Received]) -> float:
    start = time.perf_counter()
    written = 0
    for i in range(0, len(events), BATCH):
        written += await write_batch(conn, events[i : i + BATCH], [])
    elapsed = time.perf_counter() - start
    assert written == len(events), f"write_batch stored {written} of {len(events)}"
    return written / elapsed


async def _one_by_one_rate(conn: asyncpg.Connection, events: Sequence[Received]) -> float:
    start = time.perf_counter()
    written = await write_one_by_one(conn, events)
    elapsed = time.perf_counter() - start
    assert written == len(events), f"write_one_by_one stored {written} of {len(events)}"
    return written / elapsed


async def run() -> list[dict[str, object]]:
    """Measure in a temporary database (created and dropped here); one row per figure."""
    async with temporary_database(ADMIN_DSN, "mesgw_bench_store") as dsn:
        cfg = StoreSection(dsn=SecretStr(dsn), timescaledb="off")
        await migrate(cfg)
        events = _received(BATCH + BATCHED_EVENTS + ONE_BY_ONE_EVENTS)
        warmup = events[:BATCH]
        batched = events[BATCH : BATCH + BATCHED_EVENTS]
        single = events[BATCH + BATCHED_EVENTS :]
        conn = await connect(cfg)
        try:
            # Statement preparation and the staging table are one-off costs, not throughput.
            await write_batch(conn, warmup, [])
            batch_rate = await _batched_rate(conn, batched)
            single_rate = await _one_by_one_rate(conn, single)
        finally:
            await conn.close()
    return [
        {
            "bench": f"store write_batch, {BATCH} per batch (COPY + INSERT ... SELECT)",
            "value": round(batch_rate, 1),
            "unit": "events/s",
            "target": BATCH_TARGET,
        },
        {
            "bench": "store write_one_by_one, the same writes, one event per transaction",
            "value": round(single_rate, 1),
            "unit": "events/s",
            "target": "-",
        },
        {
            "bench": "store write_batch / write_one_by_one",
            "value": round(batch_rate / single_rate, 1),
            "unit": "x",
            "target": RATIO_TARGET,
        },
    ]


if __name__ == "__main__":
    print(render(asyncio.run(run())))
