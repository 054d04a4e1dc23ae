"""The outbox publisher against a real Mosquitto (the shipped config) and a real outbox."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config import GatewaySection, MqttSection, OutboxSection, Settings
from gateway.events import (
    CountData,
    DowntimeData,
    Draft,
    Event,
    OrderData,
    StateData,
    now_utc,
    publications,
    status_topic,
)
from gateway.mqtt.publisher import Publisher
from gateway.outbox import Outbox
from gateway.testing import Broker

pytestmark = pytest.mark.integration

SITE = "s"
GATEWAY = "gw-t"


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool
    content_type: str | None
    user: tuple[tuple[str, str], ...]


class Watcher:
    """A plain paho subscriber, independent of the code under test, recording what arrives.

    MQTT 5 with retain-as-published (so the publisher's retain flags are visible) and a
    persistent session (so nothing is missed while a broker restarts).
    """

    def __init__(self, broker: Broker, topic: str) -> None:
        self.topic = topic
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"watch-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self._subscribed.wait(5), "watcher did not subscribe"

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe(self.topic, options=SubscribeOptions(qos=1, retainAsPublished=True))

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        content_type = getattr(props, "ContentType", None)
        user = tuple(getattr(props, "UserProperty", ()))
        with self._lock:
            self.seen.append(Seen(msg.topic, bytes(msg.payload), msg.retain, content_type, user))

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def events(self) -> list[Seen]:
        return [s for s in self.snapshot() if "/gateway/" not in s.topic]

    def statuses(self) -> list[dict[str, object]]:
        return [json.loads(s.payload) for s in self.snapshot() if s.topic.endswith("/status")]

    async def wait(self, predicate: Callable[[Watcher], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s; saw {self.seen[-5:]}")
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def settings_for(
    broker: Broker, prefix: str, tmp_path: Path, *, version: str = "5", status_s: float = 30.0
) -> Settings:
    return Settings(
        gateway=GatewaySection(id=GATEWAY, site=SITE, status_interval_s=status_s),
        mqtt=MqttSection(
            host=broker.host,
            port=broker.port,
            prefix=prefix,
            version=version,
            client_id=f"pub-{uuid.uuid4().hex[:8]}",
            reconnect_min_s=0.05,
            reconnect_max_s=0.3,
        ),
        outbox=OutboxSection(path=tmp_path / "outbox.db", synchronous="normal"),
    )


def draft(kind: str, machine: str = "m1") -> Draft:
    ts = now_utc()
    data: CountData | StateData | DowntimeData | OrderData
    if kind == "count":
        data = CountData(good=3, reject=1, total=4, start=ts, end=ts)
    elif kind == "state":
        data = StateData(bucket="down", code=17, since=ts)
    elif kind.startswith("downtime."):
        data = DowntimeData(
            downtime_id="dt-1", start=ts, end=ts if kind.endswith("ended") else None
        )
    else:
        status = "running" if kind == "order.started" else "completed"
        data = OrderData(order_id="o-1", status=status)
    return Draft(type=kind, ts=ts, area="a", line="l", machine=machine, data=data)  # type: ignore[arg-type]


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = Outbox(
        OutboxSection(path=tmp_path / "outbox.db", synchronous="normal"),
        gateway_id=GATEWAY,
        site=SITE,
    )
    await box.open()
    try:
        yield box
    finally:
        await box.close()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


def expected_messages(events: list[Event], prefix: str) -> list[tuple[str, bytes, bool]]:
    return [(p.topic, p.payload, p.retain) for e in events for p in publications(e, prefix)]


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_rows_arrive_in_order_with_their_topics_and_retain_flags_then_leave_the_outbox(
    broker: Broker, prefix: str, tmp_path: Path, outbox: Outbox, version: str
) -> None:
    watcher = Watcher(broker, f"{prefix}/#")
    kinds = ["state", "count", "downtime.started", "count", "downtime.ended"]
    kinds += ["order.started", "count", "order.ended"] + ["count"] * 300
    events = await outbox.append([draft(k) for k in kinds])
    publisher = Publisher(
        settings_for(broker, prefix, tmp_path, version=version), outbox, version="9.9"
    )
    task = asyncio.create_task(publisher.run(), name="publisher")
    try:
        assert await publisher.flush(10)
        expected = expected_messages(events, prefix)
        await watcher.wait(lambda w: len(w.events()) >= len(expected))
        got = [(s.topic, s.payload, s.retain) for s in watcher.events()]
        assert got == expected
        assert outbox.stats().depth == 0
        assert publisher.removed == len(events)
        for seen in watcher.events():
            if version == "5" and seen.payload:
                assert seen.content_type == "application/json"
                assert ("schema", "mes.event/1") in seen.user
            else:
                assert seen.content_type is None
    finally:
        await publisher.stop()
        await task
        watcher.close()

    # What a dashboard sees when it subscribes later: the retained values only. The active
    # downtime and order were cleared by their end events.
    late = Watcher(broker, f"{prefix}/#")
    try:
        await asyncio.sleep(0.3)
        retained = {s.topic: s.payload for s in late.snapshot()}
        state = next(e for e in events if e.type == "state")
        assert retained == {
            f"{prefix}/s/a/l/m1/state": state.to_json(),
            status_topic(prefix, SITE, GATEWAY): retained[status_topic(prefix, SITE, GATEWAY)],
        }
        assert json.loads(retained[status_topic(prefix, SITE, GATEWAY)])["status"] == "offline"
    finally:
        late.close()


async def test_broker_restart_with_events_appended_meanwhile_loses_nothing(
    broker: Broker, prefix: str, tmp_path: Path, outbox: Outbox
) -> None:
    watcher = Watcher(broker, f"{prefix}/#")
    publisher = Publisher(settings_for(broker, prefix, tmp_path), outbox, version="9.9")
    task = asyncio.create_task(publisher.run(), name="publisher")
    try:
        before = await outbox.append([draft("count") for _ in range(50)])
        assert await publisher.flush(10)

        broker.stop()
        await until(lambda: not publisher.connected)
        during = await outbox.append([draft("count") for _ in range(200)])
        await asyncio.sleep(0.3)
        assert outbox.stats().depth == 200  # held durably while the broker is away
        broker.start()

        assert await publisher.flush(15)
        wanted = {e.event_id for e in before + during}
        await watcher.wait(
            lambda w: {Event.from_json(s.payload).event_id for s in w.events()} >= wanted, 15
        )
        # Duplicates are allowed (the recorder drops them); the first copies keep seq order.
        first_seen: list[int] = []
        for seen in watcher.events():
            seq = Event.from_json(seen.payload).seq
            if seq not in first_seen:
                first_seen.append(seq)
        assert first_seen == sorted(first_seen)
        assert len(first_seen) == 250
        # A birth message on each connection.
        await watcher.wait(lambda w: [s["status"] for s in w.statuses()].count("online") >= 2)
    finally:
        await publisher.stop()
        await task
        watcher.close()


async def test_connection_dropped_without_disconnect_publishes_the_will(
    broker: Broker, prefix: str, tmp_path: Path, outbox: Outbox
) -> None:
    topic = status_topic(prefix, SITE, GATEWAY)
    watcher = Watcher(broker, topic)
    publisher = Publisher(settings_for(broker, prefix, tmp_path), outbox, version="9.9")
    task = asyncio.create_task(publisher.run(), name="publisher")
    await watcher.wait(lambda w: any(s["status"] == "online" for s in w.statuses()))

    # Cancelling run() is the crash path: the socket is dropped without DISCONNECT.
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await watcher.wait(lambda w: w.statuses()[-1]["status"] == "offline")
    will = watcher.statuses()[-1]
    assert will["gateway"] == GATEWAY
    assert will["version"] == "9.9"
    assert "outbox" not in will  # the will is fixed at connect time, it knows no depth
    watcher.close()

    late = Watcher(broker, topic)
    try:
        await late.wait(lambda w: bool(w.statuses()))
        assert late.statuses()[-1]["status"] == "offline"
    finally:
        late.close()


async def test_clean_stop_says_offline_itself_and_the_will_is_not_sent(
    broker: Broker, prefix: str, tmp_path: Path, outbox: Outbox
) -> None:
    watcher = Watcher(broker, status_topic(prefix, SITE, GATEWAY))
    publisher = Publisher(settings_for(broker, prefix, tmp_path), outbox, version="9.9")
    task = asyncio.create_task(publisher.run(), name="publisher")
    try:
        await watcher.wait(lambda w: any(s["status"] == "online" for s in w.statuses()))
        await publisher.stop()
        await task
        assert not publisher.connected
        await watcher.wait(lambda w: w.statuses()[-1]["status"] == "offline")
        await asyncio.sleep(0.5)  # a will would follow the socket close at once
        offline = [s for s in watcher.statuses() if s["status"] == "offline"]
        assert len(offline) == 1
        assert offline[0]["outbox"] == {"depth": 0, "oldest_age_s": None}
        started = str(offline[0]["started"])
        assert started.endswith("Z")
    finally:
        watcher.close()


async def test_status_shows_outbox_depth_and_age(
    broker: Broker, prefix: str, tmp_path: Path, outbox: Outbox
) -> None:
    await outbox.append([draft("count") for _ in range(30)])
    await asyncio.sleep(0.05)
    watcher = Watcher(broker, status_topic(prefix, SITE, GATEWAY))
    settings = settings_for(broker, prefix, tmp_path, status_s=0.2)
    publisher = Publisher(settings, outbox, version="9.9")
    task = asyncio.create_task(publisher.run(), name="publisher")
    try:
        await watcher.wait(lambda w: len(w.statuses()) >= 3)
        birth, *later = watcher.statuses()
        # The birth goes out before the backlog: it reports what is waiting.
        assert birth["status"] == "online"
        assert birth["outbox"]["depth"] == 30  # type: ignore[index]
        assert birth["outbox"]["oldest_age_s"] >= 0.05  # type: ignore[index]
        assert later[-1]["status"] == "online"
        assert later[-1]["outbox"] == {"depth": 0, "oldest_age_s": None}
    finally:
        await publisher.stop()
        await task
        watcher.close()


async def test_refused_publish_is_kept_and_retried_until_the_broker_takes_it(
    prefix: str, tmp_path: Path, outbox: Outbox
) -> None:
    acl = tmp_path / "acl"
    rules = [f"topic read {prefix}/#", f"topic write {prefix}/s/a/l/m1/#"]
    rules.append(f"topic write {prefix}/s/gateway/#")
    acl.write_text("\n".join(rules) + "\n")
    workdir = tmp_path / "acl-broker"
    workdir.mkdir()
    broker = Broker(workdir=workdir, extra_conf=f"acl_file {acl}")
    broker.start()
    watcher = Watcher(broker, f"{prefix}/#")
    publisher = Publisher(settings_for(broker, prefix, tmp_path), outbox, version="9.9")
    task = asyncio.create_task(publisher.run(), name="publisher")
    try:
        first, refused, behind = await outbox.append(
            [draft("count", "m1"), draft("count", "m2"), draft("count", "m1")]
        )

        def delivered(w: Watcher) -> set[uuid.UUID]:
            return {Event.from_json(s.payload).event_id for s in w.events()}

        await watcher.wait(lambda w: first.event_id in delivered(w))
        await asyncio.sleep(1.0)  # several retries (Mosquitto 2.0 also drops us after each)
        assert refused.event_id not in delivered(watcher)
        assert outbox.stats().depth >= 1  # the refused row is kept
        assert outbox.stats().depth == 1 + (behind.event_id not in delivered(watcher))

        acl.write_text(f"topic readwrite {prefix}/#\n")
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)
        assert await publisher.flush(10)
        await watcher.wait(lambda w: {refused.event_id, behind.event_id} <= delivered(w))
    finally:
        await publisher.stop()
        await task
        watcher.close()
        broker.kill()
