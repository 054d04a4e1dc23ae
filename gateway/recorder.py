"""The recorder: MQTT events → PostgreSQL, acknowledged only after the commit.

A persistent MQTT session (fixed client id, clean start off, a long session expiry) makes
the broker queue every event while the recorder is away. Deliveries are acknowledged by
hand: messages are gathered into batches (up to `batch_max` or `batch_wait_ms`), each batch
is written in one transaction, and only then are its messages acknowledged, in the order
they arrived (MQTT requires PUBACKs in delivery order). A crash anywhere before the commit
loses nothing: the broker redelivers, and the store drops what it already has by event_id.
An ack is only valid on the connection that delivered the message; after a reconnect the
resumed session redelivers whatever was not acknowledged. Should the broker come back
without our session (it lost its state), what was received but not yet committed is still
written: nobody would deliver it again.

Invalid payloads become dead letters (error text and raw bytes) and are acknowledged with
their batch. Empty payloads (a retained "current value" being cleared) are acknowledged and
skipped. While PostgreSQL is unreachable the batch is held unacknowledged and retried with
backoff; the broker stops delivering once `receive_maximum` messages are unacknowledged,
so memory stays bounded and the backlog waits at the broker.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from dataclasses import dataclass

import asyncpg

from gateway.backoff import Backoff
from gateway.config import Settings
from gateway.events import Event, event_filters, now_utc
from gateway.logging import get_logger
from gateway.mqtt.client import Connected, Disconnected, Message, MqttClient, SessionOptions, SubAck
from gateway.store import DeadLetter, Received, connect, describe, prune, write_batch
from gateway.telemetry import commit_histogram
from gateway.waiting import wait_event

log = get_logger("gateway.recorder")

PRUNE_INTERVAL_S = 3600.0
# The first prune waits a little: a start usually meets a backlog, and the first database
# contact is then a batch, whose outage report says how many messages are held.
PRUNE_FIRST_S = 60.0
# MQTT 5 retain handling 1: retained messages only when the subscription is new, so a
# reconnect of the persistent session does not replay every retained value.
_RETAIN_IF_NEW = 1
# The longest a batch write (connect included) may take before the connection is
# considered dead; the batch is then retried on a new one (duplicates are dropped).
WRITE_TIMEOUT_S = 60.0
PRUNE_SLICE_S = 5.0
# A pause in deliveries this long closes a batch early (see `_next_batch`).
_GAP_S = 0.005
# SQLSTATE classes of errors caused by the data itself (22 data exception, 23 integrity
# constraint violation): retrying cannot help, the offending events become dead letters.
_BAD_INPUT_CLASSES = ("22", "23")
# How long a readiness probe of the database (before the first write) is reused.
DB_PROBE_CACHE_S = 5.0


@dataclass
class RecorderStats:
    received: int = 0  # deliveries, redeliveries included
    written: int = 0  # events newly stored
    duplicates: int = 0  # valid events the store already had
    dead_letters: int = 0
    batches: int = 0  # committed transactions
    acked: int = 0
    db_errors: int = 0  # failed database calls (each one retried)


@dataclass(slots=True)
class _Arrival:
    """A delivered message, validated on arrival so parsing overlaps the previous write."""

    message: Message
    event: Event | None  # None: an empty payload (a retained-topic clear) or invalid
    error: str | None  # why the payload is invalid

    @property
    def epoch(self) -> int:
        return self.message.epoch


class _Abandoned(Exception):
    """The batch is given up: stop requested, or the broker delivers it again anyway."""


class Recorder:
    """Subscribes to every event topic and writes what arrives to the store."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        rec = settings.recorder
        self._prefix = settings.mqtt.prefix
        filters = event_filters(self._prefix)
        if rec.share_group:
            filters = [f"$share/{rec.share_group}/{f}" for f in filters]
        self._filters = filters
        session = SessionOptions(
            client_id=rec.client_id,
            clean_start=False,
            session_expiry_s=rec.session_expiry_s,
            receive_maximum=rec.receive_maximum,
            manual_ack=True,
        )
        self._client = MqttClient(settings.mqtt, session, name="recorder")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        # A batch never waits for more than the broker will send without our acks.
        self._batch_max = max(1, min(rec.batch_max, rec.receive_maximum))
        # Deliveries held in memory are bounded: above the high mark the network thread
        # stops reading (the broker keeps the rest), below the low mark it reads again.
        self._high_water = 2 * max(rec.receive_maximum, self._batch_max)
        self._low_water = self._high_water // 2
        self._pending: collections.deque[_Arrival] = collections.deque()
        self._arrived = asyncio.Event()
        self._stop = asyncio.Event()
        self._running = False
        self._done = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._db_down = False
        self._db_ever_up = False
        self._subscribed = False
        self._subscribed_event = asyncio.Event()
        self._session_since = 0  # the connection (epoch) the broker's session began with
        self.stats = RecorderStats()
        self.commit_seconds = commit_histogram()
        # The highest sequence number stored per gateway, and a wake-up after each commit:
        # an in-process recorder's orderly stop waits until it has the gateway's last event.
        self.stored_seq: dict[str, int] = {}
        self._committed = asyncio.Event()
        self._db_checked_at = -1e9  # monotonic time of the last readiness probe
        self._db_checked: tuple[bool, str] = (False, "not checked")

    @property
    def connected(self) -> bool:
        return self._client.connected

    @property
    def subscribed(self) -> bool:
        """True once the broker granted the subscriptions of the current connection."""
        return self._subscribed

    @property
    def db_up(self) -> bool:
        """True after a successful database call, until one fails."""
        return self._db_ever_up and not self._db_down

    @property
    def pending(self) -> int:
        """Deliveries received and not yet committed."""
        return len(self._pending)

    async def check_db(self) -> tuple[bool, str]:
        """Whether the store answers: the last call's outcome, or a probe (cached briefly)."""
        if self._db_down:
            return False, "unreachable (retrying)"
        if self._db_ever_up:
            return True, "connected"
        now = time.monotonic()
        if now - self._db_checked_at >= DB_PROBE_CACHE_S:
            self._db_checked_at = now
            try:
                async with asyncio.timeout(self._settings.store.connect_timeout_s):
                    conn = await connect(self._settings.store)
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._db_checked = (False, f"unreachable: {str(err) or type(err).__name__}")
            else:
                self._db_checked = (True, "reachable")
        return self._db_checked

    async def wait_stored(self, gateway: str, seq: int, timeout: float) -> bool:
        """True once an event of `gateway` with sequence number `seq` or later is stored
        (deliveries of one publisher arrive in order); False after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.stored_seq.get(gateway, 0) < seq:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._committed.clear()
            await wait_event(self._committed, left)
        return True

    async def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has granted the subscriptions (at least once)."""
        return await wait_event(self._subscribed_event, timeout)

    async def run(self) -> None:
        """Record until `stop()` or cancellation; unacknowledged messages stay at the broker."""
        if self._running or self._done.is_set():
            raise RuntimeError("Recorder.run() can only be called once")
        self._running = True
        self._client.start()
        clean = False
        try:
            await self._record()
            clean = True
        finally:
            if clean:
                await self._client.close()
                await self._close_db()
            else:
                # Cancelled (possibly mid-transaction): drop everything without waiting.
                self._client.abort()
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
                await self._client.wait_stopped()
            self._done.set()

    async def stop(self) -> None:
        """Finish a write in progress (and ack it), abandon the rest unacknowledged, disconnect."""
        self._stop.set()
        self._arrived.set()
        if self._running:
            await self._done.wait()

    # -- MQTT events (on the event loop) ----------------------------------------------------

    def _on_connect(self, info: Connected) -> None:
        if not info.session_present:
            self._session_since = info.epoch
        # Messages of the resumed session come again (same packet ids, which we may only
        # ack on the new connection); those of a session the broker lost never will, so
        # they stay pending and are written (without an ack, which nobody expects now).
        self._pending = collections.deque(
            a for a in self._pending if not self._redelivered(a.message)
        )
        self._drained()
        # Also on a resumed session: a broker that lost its state would otherwise leave us
        # connected and deaf.
        retain_handling = _RETAIN_IF_NEW if self._client.protocol == "5" else 0
        self._client.subscribe(self._filters, qos=1, retain_handling=retain_handling)

    def _on_subscribe(self, ack: SubAck) -> None:
        if ack.refused:
            log.error("broker refused a subscription", filters=self._filters, reasons=ack.refused)
        elif ack.epoch == self._client.epoch:
            if not self._subscribed:
                log.info("subscribed", filters=self._filters)
            self._subscribed = True
            self._subscribed_event.set()

    def _on_disconnect(self, info: Disconnected) -> None:
        self._subscribed = False

    def _redelivered(self, message: Message) -> bool:
        """True when the broker will deliver `message` again on the current session."""
        return self._session_since <= message.epoch < self._client.epoch

    def _on_message(self, message: Message) -> None:
        self.stats.received += 1
        event, error = None, None
        if message.payload:
            try:
                event = Event.from_json(message.payload)
                self._check_topic(event, message.topic)
            except ValueError as err:  # pydantic's ValidationError is a ValueError
                event, error = None, str(err)
        self._pending.append(_Arrival(message, event, error))
        self._arrived.set()
        if len(self._pending) >= self._high_water:
            self._client.pause_reading(True)

    def _drained(self) -> None:
        if len(self._pending) <= self._low_water:
            self._client.pause_reading(False)

    # -- the batch loop ---------------------------------------------------------------------

    async def _record(self) -> None:
        next_prune = time.monotonic() + PRUNE_FIRST_S
        while not self._stop.is_set():
            now = time.monotonic()
            # Retention waits for a quiet moment: a backlog is recorded first (unless the
            # prune is a whole interval late).
            if now >= next_prune and (not self._pending or now >= next_prune + PRUNE_INTERVAL_S):
                next_prune = now + await self._prune()
            batch = await self._next_batch(max(0.01, next_prune - time.monotonic()))
            if batch:
                await self._commit(batch)

    async def _next_batch(self, idle_s: float) -> list[_Arrival]:
        """The next batch, or [] after `idle_s` without messages or on stop.

        A batch closes when it is full, `batch_wait_ms` after its first message, or when
        deliveries pause for `_GAP_S`: the broker's in-flight limit may be below our batch
        size, and waiting for messages it will not send before our acks only adds latency.
        """
        if not self._pending:
            self._arrived.clear()
            await wait_event(self._arrived, idle_s)
            if not self._pending or self._stop.is_set():
                return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.recorder.batch_wait_ms / 1000
        while len(self._pending) < self._batch_max and not self._stop.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            before = len(self._pending)
            self._arrived.clear()
            await wait_event(self._arrived, min(remaining, _GAP_S))
            if len(self._pending) == before:
                break
        # A reconnect meanwhile may have dropped everything pending (it comes again).
        if self._stop.is_set() or not self._pending:
            return []
        # One connection per batch: its acks are all valid or all void together.
        epoch = self._pending[0].epoch
        batch: list[_Arrival] = []
        while self._pending and len(batch) < self._batch_max and self._pending[0].epoch == epoch:
            batch.append(self._pending.popleft())
        self._drained()
        return batch

    async def _commit(self, batch: list[_Arrival]) -> None:
        received_at = now_utc()
        events: list[Received] = []
        dead: list[DeadLetter] = []
        seen: set[uuid.UUID] = set()
        repeated = 0
        for arrival in batch:
            message, event = arrival.message, arrival.event
            if arrival.error is not None:
                dead.append(DeadLetter(message.topic, message.payload, arrival.error, received_at))
                continue
            if event is None:
                continue  # an empty payload: acked, nothing to store
            if event.event_id in seen:
                repeated += 1
                continue
            seen.add(event.event_id)
            events.append(Received(event, message.payload, message.topic))
        started = time.perf_counter()
        try:
            inserted, dead = await self._write(events, dead, first=batch[0].message)
        except _Abandoned:
            return
        self.commit_seconds.observe(time.perf_counter() - started)
        for received in events:
            e = received.event
            if e.seq > self.stored_seq.get(e.gateway, 0):
                self.stored_seq[e.gateway] = e.seq
        self._committed.set()
        self.stats.batches += 1
        self.stats.written += inserted
        self.stats.duplicates += repeated + len(events) - inserted
        self.stats.dead_letters += len(dead)
        for arrival in batch:
            if self._client.ack(arrival.message):
                self.stats.acked += 1

    def _check_topic(self, event: Event, topic: str) -> None:
        # The topic names the machine and the kind of event; a payload that says otherwise
        # comes from a misbehaving publisher and would be filed under the wrong machine.
        kind = event.type.partition(".")[0]
        expected = f"{self._prefix}/{event.site}/{event.area}/{event.line}/{event.machine}/{kind}"
        if topic != expected:
            raise ValueError(f"topic does not match the event: expected {expected}")

    async def _write(
        self, events: list[Received], dead: list[DeadLetter], *, first: Message
    ) -> tuple[int, list[DeadLetter]]:
        """Write until committed; returns (new events, dead letters as stored)."""
        backoff = Backoff(cap_s=self._settings.recorder.retry_max_s)
        while True:
            if self._redelivered(first):
                raise _Abandoned()  # the whole batch comes again on the new connection
            try:
                # A connection that silently stopped answering (no reset, a partitioned
                # network) would otherwise hold the batch until TCP gives up, many minutes.
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    conn = await self._connection()
                    try:
                        inserted = await write_batch(conn, events, dead)
                    except Exception as err:
                        if not _bad_input(err):
                            raise
                        inserted, dead = await self._write_isolated(conn, events, dead)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                await self._db_failed(err, held=len(events) + len(dead))
            else:
                self._db_ok()
                return inserted, dead
            if self._stop.is_set():
                raise _Abandoned()
            await wait_event(self._stop, backoff.next_delay())
            if self._stop.is_set():
                raise _Abandoned()

    async def _write_isolated(
        self, conn: asyncpg.Connection, events: list[Received], dead: list[DeadLetter]
    ) -> tuple[int, list[DeadLetter]]:
        """One event at a time, so the one the store rejects is dead-lettered, not the batch."""
        inserted = 0
        rejected: list[DeadLetter] = []
        for item in events:
            try:
                inserted += await write_batch(conn, [item], [])
            except Exception as err:
                if not _bad_input(err):
                    raise
                error = f"rejected by the store: {err}"
                rejected.append(DeadLetter(item.topic, item.payload, error, now_utc()))
        letters = dead + rejected
        stored: list[DeadLetter] = []
        for letter in letters:
            try:
                await write_batch(conn, [], [letter])
                stored.append(letter)
            except Exception as err:
                if not _bad_input(err):
                    raise
                log.error("dead letter rejected by the store; dropped", topic=letter.topic)
        log.warning("batch rejected by the store; written event by event", rejected=len(rejected))
        return inserted, stored

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self._settings.store)
        return self._conn

    async def _db_failed(self, err: Exception, *, held: int = 0) -> None:
        """Note a failed database call (logging an outage once) and drop the connection."""
        reason = str(err) or type(err).__name__
        self.stats.db_errors += 1
        if _unreachable(err):
            if not self._db_down:
                message = "database connection lost" if self._db_ever_up else "database unavailable"
                log.warning(message, store=describe(self._settings.store), error=reason, held=held)
        else:
            # Not an outage: a schema or programming problem, worth a line on every retry.
            log.error("writing to the database failed", error=reason, held=held, exc_info=err)
        self._db_down = True
        await self._close_db()

    def _db_ok(self) -> None:
        if self._db_down:
            log.info("database connection recovered", store=describe(self._settings.store))
        self._db_down = False
        self._db_ever_up = True

    async def _close_db(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                async with asyncio.timeout(2.0):
                    await conn.close()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    async def _prune(self) -> float:
        """Apply event retention; returns the seconds until the next attempt."""
        try:
            # A first prune of a long history can take minutes on plain PostgreSQL; it
            # shares the connection with recording, so it runs in slices (each batch of
            # deletes commits on its own) and continues at the next quiet moment.
            async with asyncio.timeout(PRUNE_SLICE_S):
                conn = await self._connection()
                deleted = await prune(conn, self._settings.store)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            # The cancelled statement leaves the session in doubt: start a fresh one.
            await self._close_db()
            log.info("pruning old events continues later", slice_s=PRUNE_SLICE_S)
            return PRUNE_SLICE_S
        except Exception as err:
            if _unreachable(err):
                await self._db_failed(err)
                return self._settings.recorder.retry_max_s
            log.error("pruning old events failed", error=str(err))
            return PRUNE_INTERVAL_S
        self._db_ok()
        if deleted:
            log.info("pruned old events", deleted=deleted)
        return PRUNE_INTERVAL_S


def _causes(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _bad_input(err: BaseException) -> bool:
    """True when the data itself cannot be stored, rather than the store failing to take it."""
    for cause in _causes(err):
        # The driver refuses some values before they reach the server (a seq beyond bigint).
        if isinstance(cause, OverflowError | asyncpg.DataError):
            return True
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            return state[:2] in _BAD_INPUT_CLASSES
    return False


def _unreachable(err: BaseException) -> bool:
    """True for a database outage (connection refused or lost, server shutting down)."""
    for cause in _causes(err):
        if isinstance(
            cause,
            OSError
            | TimeoutError
            | asyncpg.PostgresConnectionError
            | asyncpg.InterfaceError
            | asyncpg.CannotConnectNowError,
        ):
            return True
        state = getattr(cause, "sqlstate", None)
        # 08 connection exception, 53 insufficient resources, 57 operator intervention.
        if isinstance(state, str) and state[:2] in ("08", "53", "57"):
            return True
    return False
