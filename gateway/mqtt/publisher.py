"""The outbox publisher: outbox rows → MQTT (QoS 1), a row leaves the outbox after PUBACK.

Resend policy: the outbox is the only resend queue. The publisher uses a clean session
(nothing survives a connection at the broker) and the client drops whatever paho still
holds when a new connection is acknowledged, so after every (re)connect the publisher
re-publishes, in id order, every row not yet acknowledged, starting from the oldest. A row
in flight when the connection dropped may arrive twice; the recorder drops the copy by
`event_id`. Nothing is published twice by the publisher *and* paho.

Order: rows are fetched and published in id order. At most `window` QoS 1 messages are
unacknowledged at a time, where `window` is the smaller of `mqtt.max_inflight` and the
broker's Receive Maximum (exceeding the latter is a protocol error). A refused PUBACK (MQTT 5
reason code ≥ 0x80, e.g. not authorized) keeps the row and re-publishes that message after a
backoff; the rows behind it go on, so only a refused row can arrive out of order.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from gateway.backoff import Backoff
from gateway.config import Settings
from gateway.events import SCHEMA, Publication, now_utc, publications, status_topic
from gateway.logging import get_logger
from gateway.mqtt.client import (
    JSON,
    Connected,
    Disconnected,
    MqttClient,
    NotConnected,
    PubAck,
    SessionOptions,
    Will,
    publish_properties,
)
from gateway.outbox import Outbox, OutboxRow
from gateway.waiting import wait_event

log = get_logger("gateway.mqtt.publisher")

# Rows read from the outbox per query, and the queue length below which the next query is
# made: enough to keep a window full, small enough to hold little in memory.
_PEEK_MAX = 500
# How long stop() waits for the broker to acknowledge the offline status.
_GOODBYE_S = 5.0
# paho numbers messages with 16-bit packet ids; keep some free for the status messages.
_MAX_WINDOW = 65_000


@dataclass(slots=True)
class _Row:
    """A row whose messages are queued or in flight; `pending` counts those not acked."""

    id: int
    pending: int


class Publisher:
    """Keeps the gateway's MQTT connection and drains the outbox into it."""

    def __init__(self, settings: Settings, outbox: Outbox, *, version: str) -> None:
        self._settings = settings
        self._outbox = outbox
        self._version = version
        self._started = now_utc()
        cfg = settings.mqtt
        self._prefix = cfg.prefix
        self._status_topic = status_topic(cfg.prefix, settings.gateway.site, settings.gateway.id)
        self._event_props = publish_properties(cfg, content_type=JSON, schema=SCHEMA)
        self._status_props = publish_properties(cfg, content_type=JSON)
        will = Will(self._status_topic, self._status_payload("offline", with_outbox=False))
        session = SessionOptions(
            client_id=cfg.client_id or f"mesgw-{settings.gateway.id}",
            clean_start=True,
            will=will,
        )
        self._client = MqttClient(cfg, session, name="publisher")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_puback

        # Per-connection state, reset on every connect.
        self._window = cfg.max_inflight
        self._rows: dict[int, _Row] = {}
        self._queue: collections.deque[tuple[int, Publication]] = collections.deque()
        self._in_flight: dict[int, tuple[int, Publication]] = {}  # mid → (row id, message)
        self._fetched_upto = 0  # highest row id taken from the outbox on this connection
        self._status_due: Publication | None = None
        self._status_mids: set[int] = set()
        self._retry: collections.deque[tuple[int, Publication]] = collections.deque()
        self._retry_at = 0.0
        self._refusals = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)

        # Rows acknowledged but not yet removed from the outbox (never re-published).
        self._acked: set[int] = set()
        self._acked_ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._finishing = False
        self._running = False
        self._done = asyncio.Event()
        self.published = 0  # messages handed to the broker, including re-publications
        self.removed = 0  # rows acknowledged and removed from the outbox
        self.acked = 0  # event messages acknowledged by the broker
        self.refused = 0  # event messages the broker refused (kept and re-published)
        self.connects = 0  # connections acknowledged by the broker

    @property
    def in_flight(self) -> int:
        """Messages published on this connection and not yet acknowledged."""
        return len(self._in_flight) + len(self._status_mids)

    @property
    def connected(self) -> bool:
        return self._client.connected

    async def run(self) -> None:
        """Publish until `stop()` (clean goodbye) or cancellation (the broker sends the will)."""
        if self._running or self._done.is_set():
            raise RuntimeError("Publisher.run() can only be called once")
        self._running = True
        self._client.start()
        clean = False
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._remove_acked(), name="mqtt-publisher-acks")
                status = tg.create_task(self._refresh_status(), name="mqtt-publisher-status")
                await self._pump()
                status.cancel()
                await self._goodbye()
                # The remover takes what was acknowledged up to here, then ends.
                self._finishing = True
                self._acked_ready.set()
            await self._client.close()
            clean = True
        finally:
            if not clean:
                # Leave like a crash would: no DISCONNECT, so the broker publishes the will.
                self._client.abort()
                await self._client.wait_stopped()
            self._done.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until every outbox row is acknowledged and removed; False on timeout."""
        return await self._outbox.wait_empty(timeout)

    async def stop(self) -> None:
        """Publish the retained offline status, disconnect cleanly and end `run()`."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._done.wait()

    # -- connection events ----------------------------------------------------------------

    def _on_connect(self, info: Connected) -> None:
        limit = min(self._settings.mqtt.max_inflight, info.receive_maximum, _MAX_WINDOW)
        self._window = max(1, limit)
        self.connects += 1
        self._reset()
        # The birth message goes first on every connection, before any re-publication.
        self._status_due = self._status_publication("online")
        self._wake.set()

    def _on_disconnect(self, info: Disconnected) -> None:
        self._wake.set()

    def _reset(self) -> None:
        self._rows.clear()
        self._queue.clear()
        self._in_flight.clear()
        self._status_mids.clear()
        self._retry.clear()
        self._fetched_upto = 0

    def _on_puback(self, ack: PubAck) -> None:
        if ack.epoch != self._client.epoch:
            return  # a late acknowledgement from a previous connection
        if ack.mid in self._status_mids:
            self._status_mids.discard(ack.mid)
            self._wake.set()
            return
        entry = self._in_flight.pop(ack.mid, None)
        if entry is None:
            return
        row_id, message = entry
        if ack.refused:
            self.refused += 1
            self._refused(row_id, message, ack.reason)
        else:
            self.acked += 1
            self._refusals.reset()
            row = self._rows[row_id]
            row.pending -= 1
            if row.pending == 0:
                del self._rows[row_id]
                self._acked.add(row_id)
                self._acked_ready.set()
        self._wake.set()

    def _refused(self, row_id: int, message: Publication, reason: str) -> None:
        delay = self._refusals.next_delay()
        if not self._retry:
            log.error(
                "broker refused an event; keeping it and retrying",
                topic=message.topic,
                row=row_id,
                reason=reason,
                retry_in_s=round(delay, 2),
            )
        self._retry.append((row_id, message))
        self._retry_at = time.monotonic() + delay

    # -- publishing ------------------------------------------------------------------------

    def _busy(self) -> int:
        return len(self._in_flight) + len(self._status_mids) + len(self._retry)

    async def _pump(self) -> None:
        """Keep the window full from the outbox; returns when stop() is requested."""
        while not self._stopping:
            self._wake.clear()
            if not self._client.connected:
                await self._wake.wait()
                continue
            self._send_ready()
            # Every row up to `last_seq` is committed before the peek starts, so an empty
            # answer means all of them are gone (acknowledged) and need no second look.
            committed = self._outbox.stats().last_seq
            if len(self._queue) < _PEEK_MAX and committed > self._fetched_upto:
                epoch = self._client.epoch
                rows = await self._outbox.peek(self._fetched_upto, _PEEK_MAX)
                if epoch != self._client.epoch or not self._client.connected:
                    continue  # the connection changed meanwhile: start over from the outbox
                if rows:
                    self._enqueue(rows)
                    continue
                self._fetched_upto = max(self._fetched_upto, committed)
            if not self._queue and self._busy() < self._window:
                await self._wait(self._outbox.wait_for_rows(self._fetched_upto))
            else:
                await self._wait(None)

    def _enqueue(self, rows: list[OutboxRow]) -> None:
        for row in rows:
            self._fetched_upto = max(self._fetched_upto, row.id)
            if row.id in self._acked:
                continue  # acknowledged, its removal is on its way
            messages = publications(row.event, self._prefix)
            self._rows[row.id] = _Row(row.id, len(messages))
            self._queue.extend((row.id, m) for m in messages)

    def _send_ready(self) -> None:
        try:
            self._send_all()
        except NotConnected:
            # The connection just dropped; its Disconnected/Connected reports are on their
            # way and the next connection starts over from the outbox.
            return

    def _send_all(self) -> None:
        while self._busy() < self._window and self._status_due is not None:
            status, self._status_due = self._status_due, None
            mid = self._client.publish(
                status.topic, status.payload, retain=True, properties=self._status_props
            )
            self._status_mids.add(mid)
        if self._retry and time.monotonic() >= self._retry_at:
            retry, self._retry = self._retry, collections.deque()
            for row_id, message in retry:
                self._send(row_id, message)
        while self._queue and self._busy() < self._window:
            row_id, message = self._queue.popleft()
            self._send(row_id, message)

    def _send(self, row_id: int, message: Publication) -> None:
        # An empty retained message clears a "current value" topic; it is not JSON.
        props = self._event_props if message.payload else None
        mid = self._client.publish(
            message.topic, message.payload, retain=message.retain, properties=props
        )
        self._in_flight[mid] = (row_id, message)
        self.published += 1

    async def _wait(self, rows: Coroutine[Any, Any, bool] | None) -> None:
        """Sleep until woken (ack, connect, stop, status) or new rows or a retry is due."""
        timeout = max(0.0, self._retry_at - time.monotonic()) if self._retry else None
        if rows is None:
            # The common case while the window is full: no extra tasks per acknowledgement.
            await wait_event(self._wake, timeout)
            return
        waiters: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._wake.wait(), name="mqtt-publisher-wake"),
            asyncio.create_task(rows, name="mqtt-publisher-rows"),
        ]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    # -- status ----------------------------------------------------------------------------

    def _status_payload(self, status: str, *, with_outbox: bool) -> bytes:
        body: dict[str, object] = {
            "status": status,
            "gateway": self._settings.gateway.id,
            "version": self._version,
            "started": self._started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if with_outbox:
            stats = self._outbox.stats()
            age = stats.oldest_age_s
            body["outbox"] = {
                "depth": stats.depth,
                "oldest_age_s": None if age is None else round(age, 3),
            }
        return json.dumps(body, separators=(",", ":")).encode()

    def _status_publication(self, status: str) -> Publication:
        return Publication(self._status_topic, self._status_payload(status, with_outbox=True), True)

    async def _refresh_status(self) -> None:
        """Refresh the retained online status, so subscribers see the outbox depth."""
        while True:
            await asyncio.sleep(self._settings.gateway.status_interval_s)
            if self._client.connected:
                self._status_due = self._status_publication("online")
                self._wake.set()

    async def _goodbye(self) -> None:
        """Retained offline status, acknowledged before DISCONNECT (which discards the will)."""
        if not self._client.connected:
            return
        epoch = self._client.epoch
        try:
            async with asyncio.timeout(_GOODBYE_S):
                while self._busy() >= self._window and self._client.connected:
                    self._wake.clear()
                    await self._wake.wait()
                if epoch != self._client.epoch or not self._client.connected:
                    return
                self._status_due = self._status_publication("offline")
                self._send_ready()
                while self._status_mids and self._client.connected:
                    self._wake.clear()
                    await self._wake.wait()
        except TimeoutError:
            log.warning("offline status not acknowledged in time", limit_s=_GOODBYE_S)

    # -- outbox removal --------------------------------------------------------------------

    async def _remove_acked(self) -> None:
        while True:
            await self._acked_ready.wait()
            self._acked_ready.clear()
            await self._remove_now()
            if self._finishing:
                return

    async def _remove_now(self) -> None:
        if not self._acked:
            return
        ids = sorted(self._acked)
        await self._outbox.remove(ids)
        self._acked.difference_update(ids)
        self.removed += len(ids)
