"""One machine's OPC UA connection: subscribe to (or poll) its tags, reconnect when lost.

After every connect the namespace URIs are looked up again and every monitored item is
created again: a restarted server has forgotten our subscription and may have renumbered
its namespaces. A tag whose item cannot be created is reported (logged once, a bad sample
with the server's status) and the others carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaStatusCodeError

from common.backoff import Backoff
from common.errors import GatewayError
from common.logging import get_logger
from connectors.opcua.config import OpcUaConnector
from connectors.opcua.nodeid import NodeAddress, parse_node_id
from connectors.opcua.values import Tag, status_name, to_sample
from connectors.sample import Emit, Link, Reading, Sample
from connectors.tags import TagConfig

log = get_logger("connectors.opcua")
_T = TypeVar("_T")

DEFAULT_CHUNK = (
    1000  # items per CreateMonitoredItems / nodes per Read when the server sets no limit
)
QUEUED_BATCHES = 16  # notification messages held between asyncua's publish loop and the emitter


class SessionLost(GatewayError):
    """The server closed the session, the connection dropped, or the subscription died."""


class SubscriptionRefused(GatewayError):
    """The server would not create a subscription (e.g. BadTooManySubscriptions)."""


class ServerSilent(GatewayError):
    """Subscribed, but neither data nor keep-alive arrived within watchdog_s."""


class EmitFailed(GatewayError):
    """The consumer of our samples raised: not a connection problem, so not retried."""


def describe(err: BaseException) -> str:
    """One line for the log and the Link: the OPC UA status name where there is one."""
    if isinstance(err, UaStatusCodeError):
        return f"{status_name(err.code)}: {str(err).strip()}"
    if isinstance(err, TimeoutError):
        return "no answer in time"
    text = str(err).strip()
    if isinstance(err, GatewayError):
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class _Feed:
    """asyncua's publish callback: whole notification messages become batches of samples."""

    def __init__(
        self,
        machine: str,
        items: dict[int, Tag],
        observe_delivery: Callable[[float], None] | None = None,
    ) -> None:
        self.machine = machine
        self.items = items
        self.batches: asyncio.Queue[list[Sample]] = asyncio.Queue(QUEUED_BATCHES)
        self.last_heard = time.monotonic()
        self.lost: str | None = None
        self.lost_event = asyncio.Event()
        self.observe_delivery = observe_delivery

    async def on_publish(self, result: ua.PublishResult) -> None:
        self.last_heard = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            return  # keep-alive
        received = datetime.now(UTC)
        machine, items, samples = self.machine, self.items, []
        for notification in data:
            if type(notification) is ua.DataChangeNotification:
                for item in notification.MonitoredItems:
                    tag = items.get(item.ClientHandle)
                    if tag is not None:
                        samples.append(to_sample(machine, tag, item.Value, received))
            elif isinstance(notification, ua.StatusChangeNotification):
                self.lose(f"subscription status {status_name(notification.Status.value)}")
        if samples:
            observe = self.observe_delivery
            if observe is not None:
                newest = max(s.ts for s in samples)
                observe(max(0.0, (received - newest).total_seconds()))
            await self.batches.put(samples)

    def lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
        self.lost_event.set()


@dataclass
class Counters:
    """What the machine's task has done so far (for metrics and tests)."""

    connects: int = 0  # sessions that delivered data or a subscription
    reconnects: int = 0  # connects after the first
    late_cycles: int = 0  # poll cycles skipped because a read overran the interval


class OpcUaDevice:
    """Runs one machine's OPC UA connector until cancelled (the `Connector` protocol)."""

    def __init__(
        self,
        machine_id: str,
        connector: OpcUaConnector,
        tags: Mapping[str, TagConfig],
        *,
        machines_per_session: int = 0,
    ) -> None:
        self.machine = machine_id
        self.machines_per_session = machines_per_session
        self.cfg = connector
        self.tags = [self._tag(name, tag) for name, tag in tags.items()]
        self.counters = Counters()
        # Called with each poll Read's duration in seconds (metrics), when set.
        self.observe_read: Callable[[float], None] | None = None
        # Called with each subscription notification's delay in seconds (metrics), when set:
        # from the source timestamp of its newest value to its arrival.
        self.observe_delivery: Callable[[float], None] | None = None
        self._link: bool | None = None
        self._last_error: str | None = None
        self._reported: dict[str, str] = {}  # tag -> problem logged last
        self._check_s = min(1.0, connector.watchdog_s / 4)
        # reset once a session delivers, not when it merely opens: a server that accepts
        # sessions but fails every subscription must not be retried in a tight loop
        self._backoff = Backoff(base_s=connector.reconnect_min_s, cap_s=connector.reconnect_max_s)

    def _tag(self, name: str, tag: TagConfig) -> Tag:
        cfg = self.cfg
        return Tag(
            name=name,
            address=parse_node_id(tag.address),
            sampling_interval_s=(
                tag.sampling_interval_s
                if tag.sampling_interval_s is not None
                else cfg.sampling_interval_s
            ),
            deadband=tag.deadband if tag.deadband is not None else cfg.deadband,
            poll_interval_s=tag.poll_interval_s or cfg.poll_interval_s,
            scale=tag.scale,
            offset=tag.offset,
        )

    async def run(self, emit: Emit) -> None:
        """Served in the session this machine shares with the others on its endpoint."""
        from connectors.opcua.shared import session_for

        session = session_for(self, self.machines_per_session)
        done = session.join(self, emit)
        try:
            await done  # fails only when our consumer fails (EmitFailed)
        finally:
            await session.leave(self)

    def retry_delay(self) -> float:
        """How long to wait before this machine's next attempt within a session."""
        return self._backoff.next_delay()

    @property
    def last_error(self) -> str | None:
        """Why the last attempt failed (as logged), None while the link is up."""
        return self._last_error

    @property
    def link_up(self) -> bool | None:
        """None before the first attempt, then whether a session is open."""
        return self._link

    # --- link state ------------------------------------------------------------------

    async def _up(self, emit: Emit) -> None:
        self.counters.connects += 1
        if self.counters.connects > 1:
            self.counters.reconnects += 1
        if self._link is False:
            log.info("opcua link recovered", machine=self.machine, endpoint=self.cfg.endpoint)
        elif self._link is None:
            log.info("opcua connected", machine=self.machine, endpoint=self.cfg.endpoint)
        self._link, self._last_error = True, None
        await self._emit(emit, [Link(self.machine, True, datetime.now(UTC))])

    async def down(self, emit: Emit, err: BaseException) -> None:
        """Report the link down (logged once per distinct error)."""
        error = describe(err)
        if self._link is True:
            log.warning(
                "opcua link lost", machine=self.machine, endpoint=self.cfg.endpoint, error=error
            )
        elif error != self._last_error:
            log.warning(
                "opcua cannot connect",
                machine=self.machine,
                endpoint=self.cfg.endpoint,
                error=error,
            )
        self._last_error = error
        if self._link is not False:
            self._link = False
            await self._emit(emit, [Link(self.machine, False, datetime.now(UTC), error)])

    async def _emit(self, emit: Emit, readings: Sequence[Reading]) -> None:
        try:
            await emit(readings)
        except Exception as err:
            raise EmitFailed(f"sample consumer failed: {err!r}") from err

    def _problem(self, tag: str, problem: str | None) -> None:
        """Log a tag's problem once (and its recovery once), however often it recurs."""
        before = self._reported.get(tag)
        if problem == before:
            return
        if problem is None:
            self._reported.pop(tag, None)
            log.info("opcua tag recovered", machine=self.machine, tag=tag)
        else:
            self._reported[tag] = problem
            log.warning("opcua tag unavailable", machine=self.machine, tag=tag, status=problem)

    # --- session ---------------------------------------------------------------------

    async def serve(
        self,
        client: Client,
        emit: Emit,
        namespaces: Sequence[str],
        limits: tuple[int, int],
        feed_lost: asyncio.Event,
        reason: list[str],
    ) -> None:
        """This machine's subscription (or poll loop) in an open session, until it fails."""
        cfg = self.cfg
        await self._up(emit)
        resolved, unresolved = self._resolve(namespaces)
        if cfg.mode == "subscribe":
            try:
                await self._subscribe(client, emit, resolved, unresolved, limits, feed_lost, reason)
                return
            except SubscriptionRefused as err:
                # Some servers (small PLCs, gateways, or one at its subscription limit)
                # refuse subscriptions: polling keeps the data coming. Subscribing is
                # tried again on the next session.
                log.warning(
                    "opcua server refuses subscriptions; polling instead",
                    machine=self.machine,
                    error=str(err),
                    poll_interval_s=cfg.poll_interval_s,
                )
        await self._poll(client, emit, resolved, unresolved, limits[1], feed_lost, reason)

    def _resolve(
        self, namespaces: Sequence[str]
    ) -> tuple[list[tuple[Tag, ua.NodeId]], dict[Tag, str]]:
        """Node ids for this server's namespace array; tags whose namespace it lacks apart."""
        resolved, unresolved = [], {}
        for tag in self.tags:
            index = _namespace_index(tag.address, namespaces)
            if index is None:
                unresolved[tag] = f"BadNodeIdUnknown: namespace {tag.address.namespace_uri} unknown"
                continue
            resolved.append((tag, node_id(tag.address, index)))
        return resolved, unresolved

    async def _report_bad(self, emit: Emit, bad: Mapping[Tag, str]) -> None:
        if not bad:
            return
        now = datetime.now(UTC)
        for tag, problem in bad.items():
            self._problem(tag.name, problem)
        await self._emit(
            emit, [Sample(self.machine, t.name, None, now, "bad", p) for t, p in bad.items()]
        )

    # --- subscription ----------------------------------------------------------------

    async def _subscribe(
        self,
        client: Client,
        emit: Emit,
        resolved: list[tuple[Tag, ua.NodeId]],
        unresolved: dict[Tag, str],
        limits: tuple[int, int],
        lost: asyncio.Event,
        reason: list[str],
    ) -> None:
        cfg = self.cfg
        feed = _Feed(self.machine, {}, self.observe_delivery)
        interval_ms = cfg.publishing_interval_s * 1000
        keepalive = max(1, int(cfg.watchdog_s / 3 / cfg.publishing_interval_s))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms,
            RequestedLifetimeCount=keepalive * 6,
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        try:
            created = await client.uaclient.create_subscription(params, feed.on_publish)
        except UaStatusCodeError as err:
            raise SubscriptionRefused(describe(err)) from err
        try:
            failed = dict(unresolved)
            failed.update(
                await self._create_items(client, created.SubscriptionId, feed, resolved, limits[0])
            )
            for tag, _ in resolved:
                if tag not in failed:
                    self._problem(tag.name, None)
            await self._report_bad(emit, failed)
            self._backoff.reset()
            if not feed.items:
                log.warning("opcua subscription has no items", machine=self.machine)

            heard = time.monotonic()
            while True:
                try:
                    batch = await asyncio.wait_for(feed.batches.get(), self._check_s)
                except TimeoutError:
                    batch = None
                if batch is not None:
                    await self._emit(emit, batch)
                    heard = time.monotonic()
                if lost.is_set():
                    raise SessionLost(reason[0] if reason else "connection lost")
                if feed.lost is not None:
                    raise SessionLost(feed.lost)
                silent = time.monotonic() - max(heard, feed.last_heard)
                if silent > cfg.watchdog_s:
                    raise ServerSilent(
                        f"no data or keep-alive for {silent:.0f} s "
                        f"(watchdog_s = {cfg.watchdog_s:g})"
                    )
        finally:
            # Retried within a shared session, a machine must not leave its old
            # subscription behind; a lost session or a shutdown takes it anyway.
            task = asyncio.current_task()
            if not lost.is_set() and not (task is not None and task.cancelling()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        client.uaclient.delete_subscriptions([created.SubscriptionId]),
                        cfg.timeout_s,
                    )

    async def _create_items(
        self,
        client: Client,
        subscription_id: int,
        feed: _Feed,
        resolved: list[tuple[Tag, ua.NodeId]],
        chunk: int,
    ) -> dict[Tag, str]:
        """Create every monitored item; the tags whose item the server refused, with why."""
        cfg = self.cfg
        requests = []
        for handle, (tag, node) in enumerate(resolved, start=1):
            feed.items[handle] = tag  # before the call: the first values may beat its answer
            flt = None
            if tag.deadband > 0:
                flt = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValue,
                    DeadbandType=ua.DeadbandType.Absolute,
                    DeadbandValue=tag.deadband,
                )
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=ua.MonitoringParameters(
                        ClientHandle=handle,
                        SamplingInterval=tag.sampling_interval_s * 1000,
                        Filter=flt,
                        QueueSize=cfg.queue_size,
                        DiscardOldest=True,
                    ),
                )
            )
        failed: dict[Tag, str] = {}
        for part in _chunks(requests, chunk):
            results = await client.uaclient.create_monitored_items(
                ua.CreateMonitoredItemsParameters(
                    SubscriptionId=subscription_id,
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                    ItemsToCreate=part,
                )
            )
            for request, result in zip(part, results, strict=True):
                if not result.StatusCode.is_good():
                    tag = feed.items.pop(request.RequestedParameters.ClientHandle)
                    failed[tag] = status_name(result.StatusCode.value)
        return failed

    # --- polling ---------------------------------------------------------------------

    async def _poll(
        self,
        client: Client,
        emit: Emit,
        resolved: list[tuple[Tag, ua.NodeId]],
        unresolved: dict[Tag, str],
        chunk: int,
        lost: asyncio.Event,
        reason: list[str],
    ) -> None:
        """Read every due tag in one Read request (chunked by the server's limit) per cycle."""
        groups: dict[float, list[tuple[Tag, ua.NodeId]]] = {}
        for tag, node in resolved:
            groups.setdefault(tag.poll_interval_s, []).append((tag, node))
        bad_groups: dict[float, dict[Tag, str]] = {}
        for tag, problem in unresolved.items():
            bad_groups.setdefault(tag.poll_interval_s, {})[tag] = problem
        due = dict.fromkeys(set(groups) | set(bad_groups), time.monotonic())
        while True:
            if lost.is_set():
                raise SessionLost(reason[0] if reason else "connection lost")
            now = time.monotonic()
            ready = [interval for interval, at in due.items() if at <= now]
            wanted = [pair for interval in ready for pair in groups.get(interval, ())]
            started = time.perf_counter()
            values = await _read(client, [node for _, node in wanted], chunk)
            if self.observe_read is not None and wanted:
                self.observe_read(time.perf_counter() - started)
            self._backoff.reset()
            received = datetime.now(UTC)
            samples = []
            for (tag, _), dv in zip(wanted, values, strict=True):
                sample = to_sample(self.machine, tag, dv, received)
                self._problem(tag.name, sample.status if sample.quality == "bad" else None)
                samples.append(sample)
            for interval in ready:
                for tag, problem in bad_groups.get(interval, {}).items():
                    self._problem(tag.name, problem)
                    samples.append(Sample(self.machine, tag.name, None, received, "bad", problem))
                # a late cycle is skipped, not caught up: the next read has the news anyway
                if due[interval] + interval < now:
                    self.counters.late_cycles += int((now - due[interval]) // interval)
                due[interval] = max(due[interval] + interval, now)
            if samples:
                await self._emit(emit, samples)
            wait = min(due.values()) - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), wait)


def node_id(address: NodeAddress, index: int) -> ua.NodeId:
    """The asyncua NodeId for an address whose namespace is now known by index."""
    return ua.NodeId(cast(Any, address.identifier), cast(Any, index))


def _namespace_index(address: NodeAddress, namespaces: Sequence[str]) -> int | None:
    if address.namespace_uri is None:
        return address.namespace_index
    try:
        return list(namespaces).index(address.namespace_uri)
    except ValueError:
        return None


def _chunks(items: list[_T], size: int) -> Iterable[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _limits(client: Client) -> tuple[int, int]:
    """MaxMonitoredItemsPerCall and MaxNodesPerRead; DEFAULT_CHUNK where the server sets none."""
    ids = (
        ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
        ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    )
    try:
        values = await client.uaclient.read_attributes(
            [ua.NodeId(cast(Any, i)) for i in ids], AttributeIds.Value
        )
    except UaStatusCodeError:
        return DEFAULT_CHUNK, DEFAULT_CHUNK
    out = []
    for dv in values:
        good = dv.StatusCode is None or dv.StatusCode.is_good()
        raw = dv.Value.Value if dv.Value is not None and good else None
        out.append(int(raw) if isinstance(raw, int) and raw > 0 else DEFAULT_CHUNK)
    return out[0], out[1]


async def _read(client: Client, nodes: list[ua.NodeId], chunk: int) -> list[ua.DataValue]:
    values: list[ua.DataValue] = []
    for start in range(0, len(nodes), chunk):
        params = ua.ReadParameters(
            MaxAge=0,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[
                ua.ReadValueId(NodeId=node, AttributeId=AttributeIds.Value)
                for node in nodes[start : start + chunk]
            ],
        )
        values += await client.uaclient.read(params)
    return values
