"""The durable local outbox: a SQLite (WAL) queue between the rules and the MQTT publisher.

An event counts as recorded once `append` has returned it: by then it is committed here. It
leaves only when `remove` is called for it after the broker's PUBACK, and rows are published in
id order, which is also `seq` order (a row's id is its event's seq; seq starts at 1 and goes on
across restarts because the last one is stored in the same transaction as the rows).

Durability (`outbox.synchronous`): in WAL mode `normal` keeps every commit across a crash or
`kill -9` of the process (the pages are in the OS before `append` returns) but can lose the
last commits on power loss; `full` fsyncs the WAL on every commit and survives power loss too.
Concurrent appends share one transaction (group commit), so fsync costs latency, not rate: a
single committer takes whatever is pending (at most `max_batch` drafts), lingers at most
`commit_interval_ms` while more appends keep arriving, commits once and answers every caller.
Removals ride in the same transactions; on their own they are committed without an fsync,
because a removal lost to a power cut only means a re-publish, which the recorder drops by
`event_id`.

Bound: the outbox holds at most `max_events` (a single append larger than that is admitted
only into an empty outbox). Production counts and downtime are never dropped: when full,
`append` waits, first come first served, until removals make room. With `full_wait_s > 0` it
gives up after that long and raises `OutboxFull`; nothing of that append was written and no
seq was used. The caller (the rules stage) must then leave its cumulative-counter baseline
where it was, so the next count event covers the parts of the refused one.

Maintenance: SQLite checkpoints the WAL as it grows; after a second without writes the
committer also truncates the WAL and hands freed pages of a drained backlog back to the file
system, so neither file stays large once the queue empties.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gateway.config import OutboxSection
from gateway.errors import GatewayError, OutboxFull
from gateway.events import Draft, Event, uuid7
from gateway.logging import get_logger

log = get_logger("gateway.outbox")

SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id INTEGER PRIMARY KEY, appended_at REAL NOT NULL, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('last_seq', 0)",
    # The rules' saved state (counter baselines, open states, active orders), one row per
    # key, written in the same transaction as the events it produced.
    "CREATE TABLE IF NOT EXISTS rules_state (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
)
_BUSY_TIMEOUT_MS = 10_000
_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # what a reset WAL is cut back to
_IDLE_MAINTENANCE_S = 1.0
_VACUUM_MIN_FREE_PAGES = 256
_VACUUM_STEP_PAGES = 4096  # bounds how long one idle tick holds up the next commit


class OutboxClosed(GatewayError):
    """The outbox is not open (or is closing), so it takes no more work."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event: Event
    appended_at: float


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    oldest_age_s: float | None
    last_seq: int
    capacity: int


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What the writer thread knows after its last commit; replaced whole, read lock-free."""

    depth: int
    oldest_at: float | None
    newest_id: int  # highest id still waiting, 0 when empty
    last_seq: int


@dataclass(slots=True)
class _Append:
    drafts: Sequence[Draft]
    future: asyncio.Future[list[Event]]
    state: Mapping[str, bytes] | None = None


@dataclass(slots=True)
class _Remove:
    ids: list[int]
    future: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class _BatchResult:
    sealed: list[list[Event] | Exception]  # per append, in batch order
    removed: int
    inserted: int


def _connect(path: Path, *, uri: bool = False) -> sqlite3.Connection:
    # Autocommit: transactions are opened explicitly, so no read keeps a snapshot open.
    conn = sqlite3.connect(
        path.resolve().as_uri() + "?mode=ro" if uri else path,
        isolation_level=None,
        uri=uri,
    )
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    return conn


def _create_private(path: Path, flags: int = 0) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | flags, 0o600)


def _load_snapshot(conn: sqlite3.Connection) -> tuple[_Snapshot, int | None]:
    """Depth, oldest row, last seq and the stored capacity, read in one snapshot."""
    conn.execute("BEGIN")
    try:
        (depth,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        first = conn.execute("SELECT appended_at FROM outbox ORDER BY id LIMIT 1").fetchone()
        (newest,) = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.execute("COMMIT")
    snap = _Snapshot(
        depth=int(depth),
        oldest_at=float(first[0]) if first else None,
        newest_id=int(newest),
        last_seq=int(meta.get("last_seq", 0)),
    )
    capacity = meta.get("capacity")
    return snap, None if capacity is None else int(capacity)


def read_stats(path: Path) -> OutboxStats:
    """Stats of an outbox file, opened read-only: safe while the daemon is running."""
    if not path.is_file():
        raise FileNotFoundError(f"no outbox at {path}")
    conn = _connect(path, uri=True)
    try:
        snap, capacity = _load_snapshot(conn)
    finally:
        conn.close()
    return OutboxStats(
        depth=snap.depth,
        oldest_age_s=None if snap.oldest_at is None else max(0.0, time.time() - snap.oldest_at),
        last_seq=snap.last_seq,
        capacity=capacity or 0,
    )


def backup(path: Path, dest: Path) -> OutboxStats:
    """A consistent copy of the outbox at `dest` (SQLite's online backup), safe while the
    daemon runs: events, sequence number and the rules' state as of one instant."""
    if not path.is_file():
        raise FileNotFoundError(f"no outbox at {path}")
    if dest.exists():
        raise FileExistsError(f"{dest} exists; the backup never overwrites")
    os.close(_create_private(dest, os.O_EXCL))  # 0600 from the start: it holds the events
    src = _connect(path, uri=True)
    try:
        copy = sqlite3.connect(dest, isolation_level=None)
        try:
            src.backup(copy)
            (check,) = copy.execute("PRAGMA integrity_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"backup {dest} failed its integrity check: {check}")
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            copy.close()
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    return read_stats(dest)


class Outbox:
    """The durable, bounded, ordered queue of sealed events awaiting the broker's PUBACK."""

    def __init__(
        self,
        cfg: OutboxSection,
        *,
        gateway_id: str,
        site: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._gateway = gateway_id
        self._site = site
        self._clock = clock
        self.path = cfg.path
        self.capacity = cfg.max_events
        self.commits = 0  # write transactions that stored events; shows group commit at work

        self._writer: ThreadPoolExecutor | None = None  # owns _wconn; one thread, so serial
        self._reader: ThreadPoolExecutor | None = None  # owns _rconn; peeks overlap commits
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._snap: _Snapshot | None = None

        self._open = False
        self._closing = False
        self._failure: BaseException | None = None
        self._committer: asyncio.Task[None] | None = None
        self._appends: deque[_Append] = deque()
        self._queued = 0  # drafts in _appends
        self._removes: list[_Remove] = []
        self._work = asyncio.Event()
        self._changed = asyncio.Event()
        self._reserved = 0  # committed rows plus admitted, uncommitted drafts
        self._space_waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._wal_dirty = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Create or open the file, take the single-writer lock and load the last seq."""
        if self._open:
            raise GatewayError(f"outbox {self.path} is already open")
        loop = asyncio.get_running_loop()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="outbox-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="outbox-read")
        try:
            await loop.run_in_executor(self._writer, self._w_open)
            await loop.run_in_executor(self._reader, self._r_open)
        except (OSError, sqlite3.Error) as err:
            await self._release_resources()
            # The operator's fix is in the config or the file system: name both.
            raise GatewayError(f"outbox.path {self.path}: cannot open: {err}") from err
        except BaseException:
            await self._release_resources()
            raise
        assert self._snap is not None
        self._reserved = self._snap.depth
        self._open = True
        self._closing = False
        self._failure = None
        self._committer = asyncio.create_task(self._run_committer(), name="outbox-committer")

    async def close(self) -> None:
        """Commit what was already appended, then close; later calls raise `OutboxClosed`."""
        if not self._open or self._closing:
            return
        self._closing = True
        closed = OutboxClosed(f"outbox {self.path} is closed")
        while self._space_waiters:
            _, fut = self._space_waiters.popleft()
            if not fut.done():
                fut.set_exception(closed)
        self._work.set()
        failure: BaseException | None = None
        try:
            if self._committer is not None:
                await asyncio.wait({self._committer})
                if not self._committer.cancelled():
                    failure = self._committer.exception()
        finally:
            await self._release_resources()
            self._open = False
            self._signal()
        if failure is not None:
            raise failure

    async def _release_resources(self) -> None:
        loop = asyncio.get_running_loop()
        # The writer closes last: the last connection to close checkpoints and removes the WAL.
        if self._reader is not None:
            await loop.run_in_executor(self._reader, self._r_close)
            self._reader.shutdown(wait=False)
            self._reader = None
        if self._writer is not None:
            await loop.run_in_executor(self._writer, self._w_close)
            self._writer.shutdown(wait=False)
            self._writer = None

    # -- the public queue --------------------------------------------------------------------

    async def append(
        self, drafts: Sequence[Draft], state: Mapping[str, bytes] | None = None
    ) -> list[Event]:
        """Seal and durably commit `drafts` in order; returns the events once committed.

        `state` rows (key → bytes) are saved in the same transaction: the rules' baselines
        never get ahead of, or fall behind, the events they produced.
        """
        self._check_usable()
        batch = tuple(drafts)
        if not batch and not state:
            return []
        await self._admit(len(batch))
        if self._closing:
            self._release(len(batch))
            raise OutboxClosed(f"outbox {self.path} is closed")
        entry = _Append(batch, asyncio.get_running_loop().create_future(), state)
        self._appends.append(entry)
        self._queued += len(batch)
        self._work.set()
        # A caller cancelled here may still see its events committed: the write is not undone.
        return await entry.future

    async def load_state(self) -> dict[str, bytes]:
        """The rules' state as last committed with `append(…, state=…)`."""
        self._check_usable()
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._r_state)

    async def peek(self, after_id: int, limit: int) -> list[OutboxRow]:
        """Up to `limit` waiting rows with id > `after_id`, in id order."""
        self._check_usable()
        if limit <= 0:
            return []
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._r_peek, after_id, limit)

    async def remove(self, ids: Iterable[int]) -> None:
        """Delete acknowledged rows; unknown ids are ignored."""
        self._check_usable()
        wanted = list(ids)
        if not wanted:
            return
        entry = _Remove(wanted, asyncio.get_running_loop().create_future())
        self._removes.append(entry)
        self._work.set()
        await entry.future

    @property
    def is_open(self) -> bool:
        """True from `open()` until `close()` begins, unless the committer failed."""
        return self._open and not self._closing and self._failure is None

    def stats(self) -> OutboxStats:
        """Depth, age of the oldest waiting event, last seq and capacity, from memory."""
        snap = self._snap
        if snap is None:
            raise OutboxClosed(f"outbox {self.path} was never opened")
        age = None if snap.oldest_at is None else max(0.0, self._clock() - snap.oldest_at)
        return OutboxStats(
            depth=snap.depth, oldest_age_s=age, last_seq=snap.last_seq, capacity=self.capacity
        )

    # The interface returns False on timeout instead of raising, hence its own timeout argument.
    async def wait_for_rows(self, after_id: int, timeout: float | None = None) -> bool:
        """True once a row with id > `after_id` is committed and waiting; False on timeout/close.

        Rows already removed do not count, so a publisher restarting at 0 over a drained outbox
        waits instead of spinning on empty peeks.
        """
        return await self._wait_until(lambda: self._newest_id() > after_id, timeout)

    async def wait_empty(self, timeout: float) -> bool:
        """True once no event is waiting; False if that did not happen within `timeout`."""
        return await self._wait_until(
            lambda: self._snap is not None and not self._snap.depth, timeout
        )

    async def checkpoint(self) -> None:
        """Truncate the WAL and return a drained backlog's free pages to the file system now."""
        self._check_usable()
        assert self._writer is not None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._w_maintain, 0)

    # -- admission (the bound) ---------------------------------------------------------------

    def _fits(self, n: int) -> bool:
        return self._reserved + n <= self.capacity or self._reserved == 0

    async def _admit(self, n: int) -> None:
        if not self._space_waiters and self._fits(n):
            self._reserved += n
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, waiter)
        self._space_waiters.append(entry)
        try:
            if self._cfg.full_wait_s > 0:
                done, _ = await asyncio.wait({waiter}, timeout=self._cfg.full_wait_s)
                if not done:
                    raise OutboxFull(
                        f"outbox {self.path} stayed full ({self.capacity} events) "
                        f"for {self._cfg.full_wait_s}s"
                    )
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(n)  # space was granted just as this caller gave up
            else:
                waiter.cancel()
            if entry in self._space_waiters:
                self._space_waiters.remove(entry)
            self._grant_space()
            raise

    def _release(self, n: int) -> None:
        self._reserved -= n
        self._grant_space()

    def _grant_space(self) -> None:
        # First come, first served: a large append at the head is not overtaken by small ones.
        while self._space_waiters:
            n, waiter = self._space_waiters[0]
            if waiter.done():
                self._space_waiters.popleft()
            elif self._fits(n):
                self._space_waiters.popleft()
                self._reserved += n
                waiter.set_result(None)
            else:
                return

    # -- the committer -----------------------------------------------------------------------

    async def _run_committer(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._writer is not None
        try:
            while True:
                if not self._appends and not self._removes:
                    if self._closing:
                        return
                    self._work.clear()
                    try:
                        async with asyncio.timeout(
                            _IDLE_MAINTENANCE_S if self._wal_dirty else None
                        ):
                            await self._work.wait()
                    except TimeoutError:
                        await self._idle_maintenance()
                    continue
                if self._appends:
                    await self._linger()
                appends = self._take_appends()
                removes, self._removes = self._removes, []
                if not appends and not removes:
                    continue
                job = loop.run_in_executor(
                    self._writer,
                    self._w_batch,
                    [(a.drafts, a.state) for a in appends],
                    [i for r in removes for i in r.ids],
                )
                # Callers learn the real outcome even if this task is cancelled mid-commit.
                job.add_done_callback(functools.partial(self._settle, appends, removes))
                await asyncio.wait({job})
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            self._fail_pending(self._failure)

    async def _linger(self) -> None:
        """Let appenders that are already runnable join this batch, up to commit_interval_ms."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cfg.commit_interval_ms / 1000
        seen = -1
        while seen != self._queued and self._queued < self._cfg.max_batch:
            if loop.time() >= deadline:
                return
            seen = self._queued
            await asyncio.sleep(0)

    def _take_appends(self) -> list[_Append]:
        taken: list[_Append] = []
        size = 0
        while self._appends:
            head = self._appends[0]
            n = len(head.drafts)
            if taken and size + n > self._cfg.max_batch:
                break
            self._appends.popleft()
            self._queued -= n
            if head.future.done():  # cancelled before it was written: give its room back
                self._release(n)
                continue
            taken.append(head)
            size += n
        return taken

    def _settle(
        self, appends: list[_Append], removes: list[_Remove], job: asyncio.Future[_BatchResult]
    ) -> None:
        error = job.exception() if not job.cancelled() else OutboxClosed("commit abandoned")
        if error is not None:
            for a in appends:
                self._release(len(a.drafts))
                if not a.future.done():
                    a.future.set_exception(error)
            for r in removes:
                if not r.future.done():
                    r.future.set_exception(error)
            return
        result = job.result()
        for a, sealed in zip(appends, result.sealed, strict=True):
            if isinstance(sealed, Exception):
                self._release(len(a.drafts))
                if not a.future.done():
                    a.future.set_exception(sealed)
            elif not a.future.done():
                a.future.set_result(sealed)
        for r in removes:
            if not r.future.done():
                r.future.set_result(None)
        if result.inserted:
            self.commits += 1
        if result.inserted or result.removed:
            self._wal_dirty = True
        if result.removed:
            self._release(result.removed)
        self._signal()

    async def _idle_maintenance(self) -> None:
        assert self._writer is not None
        loop = asyncio.get_running_loop()
        try:
            done = await loop.run_in_executor(self._writer, self._w_maintain, _VACUUM_STEP_PAGES)
        except sqlite3.Error as err:
            # Not fatal: the WAL is still checkpointed automatically as it grows.
            log.warning("outbox maintenance failed; retrying when idle", error=str(err))
            return
        self._wal_dirty = not done

    def _fail_pending(self, cause: BaseException | None) -> None:
        error = OutboxClosed(f"outbox {self.path} committer stopped")
        if cause is not None:
            error.__cause__ = cause
        while self._appends:
            entry = self._appends.popleft()
            self._queued -= len(entry.drafts)
            self._release(len(entry.drafts))
            if not entry.future.done():
                entry.future.set_exception(error)
        removes, self._removes = self._removes, []
        for r in removes:
            if not r.future.done():
                r.future.set_exception(error)
        while self._space_waiters:
            _, waiter = self._space_waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    # -- helpers on the event loop -----------------------------------------------------------

    def _check_usable(self) -> None:
        if not self._open or self._closing:
            raise OutboxClosed(f"outbox {self.path} is not open")
        if self._failure is not None:
            raise OutboxClosed(f"outbox {self.path} committer stopped") from self._failure

    def _newest_id(self) -> int:
        return self._snap.newest_id if self._snap is not None else 0

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_until(self, predicate: Callable[[], bool], within: float | None) -> bool:
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    if not self._open:
                        return False
                    await self._changed.wait()
        except TimeoutError:
            return predicate()
        return True

    # -- the writer thread (only these touch _wconn) -----------------------------------------

    def _w_open(self) -> None:
        path = self.path
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o750)
        self._lock_fd = _create_private(path.with_name(path.name + ".lock"))
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise GatewayError(f"outbox {path} is in use by another process") from err
        if not path.exists():
            self._w_create(path)
        conn = _connect(path)
        self._wconn = conn
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise GatewayError(f"outbox {path}: cannot use WAL journal (got {mode})")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise GatewayError(
                f"outbox {path} has format {version}; this gateway reads {SCHEMA_VERSION}"
            )
        conn.execute(f"PRAGMA synchronous = {self._cfg.synchronous.upper()}")
        conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('capacity', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (self.capacity,),
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._snap, _ = _load_snapshot(conn)

    def _w_create(self, path: Path) -> None:
        """Build the empty outbox beside its final name and rename it in: never half made."""
        staging = path.with_name(f".{path.name}.init")
        for leftover in (staging, Path(f"{staging}-wal"), Path(f"{staging}-shm")):
            leftover.unlink(missing_ok=True)
        os.close(_create_private(staging, os.O_EXCL))
        conn = _connect(staging)
        try:
            # auto_vacuum only takes effect before the first table exists.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        finally:
            conn.close()  # as the only connection, this folds the WAL into the file
        # A -wal left from a deleted database would be replayed into this new one.
        for orphan in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            orphan.unlink(missing_ok=True)
        os.replace(staging, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _w_close(self) -> None:
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _w_batch(
        self, groups: list[tuple[Sequence[Draft], Mapping[str, bytes] | None]], removes: list[int]
    ) -> _BatchResult:
        conn = self._wconn
        snap = self._snap
        assert conn is not None and snap is not None
        seq = snap.last_seq
        sealed: list[list[Event] | Exception] = []
        rows: list[tuple[int, bytes]] = []
        states: dict[str, bytes] = {}
        for drafts, state in groups:
            try:
                events = [
                    d.seal(event_id=uuid7(), seq=seq + i, gateway=self._gateway, site=self._site)
                    for i, d in enumerate(drafts, start=1)
                ]
            except Exception as err:  # one malformed draft fails its own append, not the batch
                sealed.append(err)
                continue
            sealed.append(events)
            if state:
                states.update(state)  # later appends carry the newer state
            seq += len(events)
            rows.extend((e.seq, e.to_json()) for e in events)
        if not rows and not removes and not states:
            return _BatchResult(sealed=sealed, removed=0, inserted=0)
        now = self._clock()
        lazy = not rows and not states and self._cfg.synchronous == "full"
        if lazy:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                removed = 0
                if removes:
                    cur = conn.executemany(
                        "DELETE FROM outbox WHERE id = ?", ((i,) for i in removes)
                    )
                    removed = cur.rowcount
                if rows:
                    conn.executemany(
                        "INSERT INTO outbox (id, appended_at, body) VALUES (?, ?, ?)",
                        ((row_id, now, body) for row_id, body in rows),
                    )
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (seq,))
                if states:
                    conn.executemany(
                        "INSERT INTO rules_state (key, value) VALUES (?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        states.items(),
                    )
                first = None
                newest = seq if rows else snap.newest_id
                if removed:
                    first = conn.execute(
                        "SELECT appended_at FROM outbox ORDER BY id LIMIT 1"
                    ).fetchone()
                    (newest,) = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            if lazy:
                conn.execute("PRAGMA synchronous = FULL")
        depth = snap.depth - removed + len(rows)
        if removed:
            oldest = float(first[0]) if first else None
        elif snap.depth:
            oldest = snap.oldest_at
        else:
            oldest = now if rows else None
        self._snap = _Snapshot(depth=depth, oldest_at=oldest, newest_id=newest, last_seq=seq)
        return _BatchResult(sealed=sealed, removed=removed, inserted=len(rows))

    def _w_maintain(self, vacuum_step: int) -> bool:
        """Vacuum free pages (0 = all) and truncate the WAL; True when nothing is left to do."""
        conn = self._wconn
        assert conn is not None
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        if free >= _VACUUM_MIN_FREE_PAGES:
            # execute() stops after one step (one page) of a statement without result columns;
            # executescript() steps it to the end.
            conn.executescript(f"PRAGMA incremental_vacuum({int(vacuum_step)})")
            (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy and free < _VACUUM_MIN_FREE_PAGES

    # -- the reader thread (only these touch _rconn) -----------------------------------------

    def _r_open(self) -> None:
        conn = _connect(self.path)
        conn.execute("PRAGMA query_only = ON")
        self._rconn = conn

    def _r_state(self) -> dict[str, bytes]:
        conn = self._rconn
        assert conn is not None
        return {k: bytes(v) for k, v in conn.execute("SELECT key, value FROM rules_state")}

    def _r_close(self) -> None:
        if self._rconn is not None:
            self._rconn.close()
            self._rconn = None

    def _r_peek(self, after_id: int, limit: int) -> list[OutboxRow]:
        conn = self._rconn
        assert conn is not None
        found = conn.execute(
            "SELECT id, appended_at, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [
            OutboxRow(id=i, event=Event.from_json(body), appended_at=at) for i, at, body in found
        ]
