"""The outbox: order, seq across restarts, peek/remove, the bound, group commit, kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config import OutboxSection
from gateway.errors import GatewayError, OutboxFull
from gateway.events import CountData, Draft, Event, now_utc
from gateway.outbox import Outbox, OutboxClosed, OutboxStats, read_stats

ROOT = Path(__file__).resolve().parents[2]


def draft(machine: str = "m", good: int = 1) -> Draft:
    end = now_utc()
    return Draft(
        type="count",
        ts=end,
        area="a",
        line="l",
        machine=machine,
        data=CountData(good=good, reject=0, total=good, start=end - timedelta(seconds=1), end=end),
    )


@asynccontextmanager
async def opened(
    tmp_path: Path, clock: Callable[[], float] = time.time, **cfg: Any
) -> AsyncIterator[Outbox]:
    box = Outbox(
        OutboxSection(path=tmp_path / "outbox.db", **cfg), gateway_id="gw-t", site="s", clock=clock
    )
    await box.open()
    try:
        yield box
    finally:
        await box.close()


async def still_pending(task: asyncio.Task[Any]) -> bool:
    """True if `task` does not finish within a short grace (used only to show it is blocked)."""
    done, _ = await asyncio.wait({task}, timeout=0.1)
    return not done


def snapshot_files(directory: Path) -> dict[str, bytes]:
    # The -shm index is shared memory every reader may touch; the data lives in the others.
    return {p.name: p.read_bytes() for p in directory.iterdir() if not p.name.endswith("-shm")}


def file_size(path: Path) -> int:
    return path.stat().st_size


async def test_concurrent_appends_keep_order_and_seq(tmp_path: Path) -> None:
    returned: list[list[Event]] = []

    async def producer(p: int) -> None:
        good = 0
        for k in range(25):
            batch = []
            for _ in range(k % 4 + 1):
                good += 1
                batch.append(draft(machine=f"m{p}", good=good))
            returned.append(await box.append(batch))

    async with opened(tmp_path) as box:
        await asyncio.gather(*(producer(p) for p in range(40)))
        rows = await box.peek(0, 10**6)

    total = 40 * sum(k % 4 + 1 for k in range(25))
    assert [r.id for r in rows] == list(range(1, total + 1))
    assert [r.event.seq for r in rows] == [r.id for r in rows]
    for events in returned:  # each append is one contiguous run of seqs
        seqs = [e.seq for e in events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    for p in range(40):
        goods = [r.event.data.good for r in rows if r.event.machine == f"m{p}"]  # type: ignore[union-attr]
        assert goods == list(range(1, len(goods) + 1))
    assert {e.event_id: e for batch in returned for e in batch} == {
        r.event.event_id: r.event for r in rows
    }
    assert {(r.event.gateway, r.event.site) for r in rows} == {("gw-t", "s")}


async def test_seq_continues_across_reopen_even_when_drained(tmp_path: Path) -> None:
    async with opened(tmp_path) as box:
        first = await box.append([draft(), draft(), draft()])
        await box.remove(e.seq for e in first)
        assert box.stats().depth == 0
    async with opened(tmp_path) as box:
        assert box.stats().last_seq == 3
        again = await box.append([draft(), draft()])
        assert [e.seq for e in again] == [4, 5]
        assert [r.id for r in await box.peek(0, 10)] == [4, 5]


async def test_peek_and_remove(tmp_path: Path) -> None:
    async with opened(tmp_path) as box:
        events = await box.append([draft(good=i + 1) for i in range(10)])
        assert [r.id for r in await box.peek(0, 4)] == [1, 2, 3, 4]
        assert [r.id for r in await box.peek(4, 100)] == [5, 6, 7, 8, 9, 10]
        assert await box.peek(10, 5) == []
        assert await box.peek(0, 0) == []
        row = (await box.peek(2, 1))[0]
        assert row.event == events[2]
        assert row.appended_at > 0

        await box.remove([2, 3, 3, 99])  # duplicates and unknown ids are harmless
        assert box.stats().depth == 8
        assert [r.id for r in await box.peek(0, 100)] == [1, 4, 5, 6, 7, 8, 9, 10]
        await box.remove(i for i in (1, 4))
        await box.remove([])
        assert [r.id for r in await box.peek(0, 100)] == [5, 6, 7, 8, 9, 10]
        assert box.stats().depth == 6


async def test_stats_depth_and_oldest_age(tmp_path: Path) -> None:
    now = [1000.0]
    async with opened(tmp_path, clock=lambda: now[0], max_events=5000) as box:
        assert box.stats() == OutboxStats(depth=0, oldest_age_s=None, last_seq=0, capacity=5000)
        early = await box.append([draft(), draft()])
        now[0] = 1010.0
        await box.append([draft(), draft(), draft()])
        now[0] = 1015.0
        stats = box.stats()
        assert (stats.depth, stats.oldest_age_s, stats.last_seq) == (5, 15.0, 5)

        await box.remove(e.seq for e in early)
        assert box.stats().oldest_age_s == 5.0
        await box.remove(range(3, 6))
        stats = box.stats()
        assert (stats.depth, stats.oldest_age_s, stats.last_seq) == (0, None, 5)
    assert box.stats().last_seq == 5  # still answers after close, for the shutdown log


async def test_read_stats_reads_a_live_outbox_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with pytest.raises(FileNotFoundError):
        read_stats(path)
    async with opened(tmp_path, max_events=2000) as box:
        await box.append([draft(), draft(), draft()])
        await box.remove([1])
        files = snapshot_files(tmp_path)
        stats = read_stats(path)
        assert snapshot_files(tmp_path) == files
        assert (stats.depth, stats.last_seq, stats.capacity) == (2, 3, 2000)
        assert stats.oldest_age_s is not None and 0 <= stats.oldest_age_s < 60
        assert [e.seq for e in await box.append([draft()])] == [4]
    stats = read_stats(path)
    assert (stats.depth, stats.last_seq) == (3, 4)


async def test_full_outbox_makes_append_wait_until_remove(tmp_path: Path) -> None:
    async with opened(tmp_path, max_events=1000) as box:
        await box.append([draft() for _ in range(1000)])
        waiting = asyncio.create_task(box.append([draft()]))
        assert await still_pending(waiting)
        assert box.stats().depth == 1000
        await box.remove([1])  # removal goes through although appends are blocked
        assert [e.seq for e in await waiting] == [1001]
        assert box.stats().depth == 1000


async def test_full_outbox_raises_outbox_full_after_full_wait_s(tmp_path: Path) -> None:
    async with opened(tmp_path, max_events=1000, full_wait_s=0.05) as box:
        await box.append([draft() for _ in range(1000)])
        with pytest.raises(OutboxFull):
            await box.append([draft(), draft()])
        assert (box.stats().depth, box.stats().last_seq) == (1000, 1000)
        await box.remove(range(1, 11))
        refill = await box.append([draft() for _ in range(10)])
        assert [e.seq for e in refill] == list(range(1001, 1011))  # the refused one used no seq


async def test_waiters_for_space_are_served_in_order_and_cancel_cleanly(tmp_path: Path) -> None:
    async with opened(tmp_path, max_events=1000) as box:
        await box.append([draft() for _ in range(1000)])
        five = [draft() for _ in range(5)]
        gone = asyncio.create_task(box.append([draft()]))
        larger = asyncio.create_task(box.append(five))
        small = asyncio.create_task(box.append([draft()]))
        assert await still_pending(small)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone

        await box.remove([1])
        assert await still_pending(small)  # it fits, but the larger one asked first
        assert not larger.done()
        await box.remove(range(2, 6))
        granted = await larger
        assert [e.seq for e in granted] == [1001, 1002, 1003, 1004, 1005]
        assert await still_pending(small)
        await box.remove([6])
        assert [e.seq for e in await small] == [1006]
        assert box.stats().depth == 1000


async def test_an_append_larger_than_the_bound_fits_only_an_empty_outbox(tmp_path: Path) -> None:
    async with opened(tmp_path, max_events=1000) as box:
        events = await box.append([draft() for _ in range(1500)])
        assert len(events) == 1500
        after = asyncio.create_task(box.append([draft()]))
        assert await still_pending(after)
        await box.remove(range(1, 502))
        assert [e.seq for e in await after] == [1501]


async def test_group_commit_batches_concurrent_appends(tmp_path: Path) -> None:
    async with opened(tmp_path) as box:
        for _ in range(5):  # one at a time: one transaction each
            await box.append([draft()])
        assert box.commits == 5
        await asyncio.gather(*(box.append([draft()]) for _ in range(1000)))
        assert box.commits - 5 <= 3
        assert box.stats().depth == 1005


async def test_max_batch_caps_a_transaction(tmp_path: Path) -> None:
    async with opened(tmp_path, max_batch=100) as box:
        await asyncio.gather(*(box.append([draft()]) for _ in range(1000)))
        assert box.commits >= 10


async def test_malformed_draft_fails_only_its_own_append(tmp_path: Path) -> None:
    good = draft()
    naive = Draft(
        type="count", ts=datetime(2026, 1, 1), area="a", line="l", machine="m", data=good.data
    )
    async with opened(tmp_path) as box:
        results = await asyncio.gather(
            box.append([good]), box.append([naive]), box.append([good]), return_exceptions=True
        )
        assert isinstance(results[1], ValidationError)
        assert [[e.seq for e in r] for r in (results[0], results[2])] == [[1], [2]]  # type: ignore[union-attr]
        assert box.commits == 1
        assert [r.id for r in await box.peek(0, 10)] == [1, 2]


async def test_wait_for_rows(tmp_path: Path) -> None:
    async with opened(tmp_path) as box:
        assert not await box.wait_for_rows(0, timeout=0.05)
        woken = asyncio.create_task(box.wait_for_rows(0, timeout=10))
        assert await still_pending(woken)
        await box.append([draft()])
        assert await woken
        assert await box.wait_for_rows(0, timeout=0)
        assert not await box.wait_for_rows(1, timeout=0.05)
        await box.remove([1])
        # A removed row does not count: a publisher restarting at 0 must wait, not spin.
        assert not await box.wait_for_rows(0, timeout=0.05)
        at_close = asyncio.create_task(box.wait_for_rows(1))
        assert await still_pending(at_close)
    assert await at_close is False


async def test_wait_empty(tmp_path: Path) -> None:
    async with opened(tmp_path) as box:
        assert await box.wait_empty(timeout=0)
        await box.append([draft(), draft()])
        assert not await box.wait_empty(timeout=0.05)
        drained = asyncio.create_task(box.wait_empty(timeout=10))
        await box.remove([1])
        assert await still_pending(drained)
        await box.remove([2])
        assert await drained


async def test_close_commits_what_was_appended_and_refuses_more(tmp_path: Path) -> None:
    box = Outbox(OutboxSection(path=tmp_path / "outbox.db"), gateway_id="gw-t", site="s")
    await box.open()
    appends = [asyncio.create_task(box.append([draft()])) for _ in range(50)]
    # Tasks start in creation order, so every append is queued before close begins.
    await asyncio.create_task(box.close())
    assert sorted(e.seq for t in appends for e in t.result()) == list(range(1, 51))
    with pytest.raises(OutboxClosed):
        await box.append([draft()])
    with pytest.raises(OutboxClosed):
        await box.peek(0, 10)
    with pytest.raises(OutboxClosed):
        await box.remove([1])
    assert box.stats().depth == 50
    async with opened(tmp_path) as again:
        assert again.stats().depth == 50


async def test_close_fails_appends_waiting_for_space(tmp_path: Path) -> None:
    async with opened(tmp_path, max_events=1000) as box:
        await box.append([draft() for _ in range(1000)])
        waiting = asyncio.create_task(box.append([draft()]))
        assert await still_pending(waiting)
    with pytest.raises(OutboxClosed):
        await waiting


async def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    async with opened(tmp_path) as box:
        other = Outbox(OutboxSection(path=tmp_path / "outbox.db"), gateway_id="gw-t", site="s")
        with pytest.raises(GatewayError, match="in use"):
            await other.open()
        assert [e.seq for e in await box.append([draft()])] == [1]


async def test_new_outbox_is_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "mesgw" / "outbox.db"
    old = os.umask(0o022)
    try:
        box = Outbox(OutboxSection(path=path), gateway_id="gw-t", site="s")
        await box.open()
    finally:
        os.umask(old)
    try:
        await box.append([draft()])
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
        for name in ("outbox.db", "outbox.db-wal", "outbox.db.lock"):
            assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
    finally:
        await box.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["outbox.db", "outbox.db.lock"]


def delete_keeping_wal(path: Path, wal: bytes) -> None:
    """An operator resets the outbox by deleting the file but leaves a crash's WAL behind."""
    path.unlink()
    Path(f"{path}-wal").write_bytes(wal)


async def test_a_recreated_outbox_ignores_a_stale_wal(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with opened(tmp_path) as box:
        await box.append([draft(), draft()])
        wal = snapshot_files(tmp_path)["outbox.db-wal"]
    delete_keeping_wal(path, wal)
    async with opened(tmp_path) as box:
        assert (box.stats().depth, box.stats().last_seq) == (0, 0)
        assert [e.seq for e in await box.append([draft()])] == [1]


async def test_checkpoint_truncates_wal_and_returns_space(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with opened(tmp_path) as box:
        await asyncio.gather(*(box.append([draft() for _ in range(1000)]) for _ in range(20)))
        await box.checkpoint()
        full_size = file_size(path)
        await box.remove(range(1, 20_001))
        await box.checkpoint()
        assert file_size(Path(f"{path}-wal")) == 0
        assert file_size(path) < full_size / 4
        assert [e.seq for e in await box.append([draft()])] == [20_001]


KILL_SCRIPT = """
import asyncio, sys
from datetime import timedelta
from pathlib import Path
from gateway.config import OutboxSection
from gateway.events import CountData, Draft, now_utc
from gateway.outbox import Outbox

async def main(path, sync):
    box = Outbox(OutboxSection(path=Path(path), synchronous=sync), gateway_id="gw-k", site="s")
    await box.open()

    async def produce():
        while True:
            end = now_utc()
            data = CountData(good=1, reject=0, total=1, start=end - timedelta(seconds=1), end=end)
            d = Draft(type="count", ts=end, area="a", line="l", machine="m", data=data)
            for event in await box.append([d]):
                sys.stdout.write(f"{event.seq}\\n")
            sys.stdout.flush()

    await asyncio.gather(*(produce() for _ in range(16)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_kill_9_loses_no_acknowledged_event(tmp_path: Path, synchronous: str) -> None:
    path = tmp_path / "outbox.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILL_SCRIPT,
        str(path),
        synchronous,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    printed: list[int] = []
    try:
        async with asyncio.timeout(60):
            while len(printed) < 3000:
                line = await proc.stdout.readline()
                assert line, f"writer exited early: {(await proc.stderr.read()).decode()}"
                printed.append(int(line))
            proc.send_signal(signal.SIGKILL)
            rest = await proc.stdout.read()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Each line is one write(2) of a few bytes, so it arrives whole; a torn tail cannot occur.
    printed += [int(line) for line in rest.splitlines()]

    crashed = read_stats(path)  # the CLI view of a crashed outbox, before anyone repairs it
    async with opened(tmp_path, synchronous=synchronous) as box:
        rows = await box.peek(0, 10**7)
        seqs = [r.event.seq for r in rows]
        assert set(printed) <= set(seqs)
        assert seqs == list(range(1, len(seqs) + 1))  # and nothing missing in between
        assert box.stats().last_seq == len(seqs) == crashed.last_seq == crashed.depth
        assert [e.seq for e in await box.append([draft()])] == [len(seqs) + 1]


async def test_rules_state_commits_with_its_events_and_survives_reopen(tmp_path: Path) -> None:
    naive = Draft(
        type="count", ts=datetime(2026, 1, 1), area="a", line="l", machine="m", data=draft().data
    )
    async with opened(tmp_path) as box:
        assert await box.load_state() == {}
        await box.append([draft()], state={"m1": b"one", "m2": b"two"})
        await box.append([], state={"m2": b"two-b"})  # state alone, no events
        results = await asyncio.gather(
            box.append([draft()], state={"m1": b"newer"}),
            box.append([naive], state={"m1": b"from-a-failed-append"}),
            return_exceptions=True,
        )
        assert isinstance(results[1], ValidationError)
        assert await box.load_state() == {"m1": b"newer", "m2": b"two-b"}
    async with opened(tmp_path) as box:
        assert await box.load_state() == {"m1": b"newer", "m2": b"two-b"}
        assert box.stats().depth == 2
