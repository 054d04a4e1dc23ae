"""The recorder against a real Mosquitto (the shipped config) and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr

from gateway import recorder as recorder_module
from gateway.config import MqttSection, RecorderSection, Settings, StoreSection
from gateway.events import CountData, Draft, Event, StateData, now_utc, publications, uuid7
from gateway.recorder import Recorder
from gateway.store import migrate
from gateway.testing import Broker, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def settings_for(
    broker: Broker,
    prefix: str,
    dsn: str,
    *,
    client_id: str = "rec",
    version: str = "5",
    share_group: str | None = None,
    receive_maximum: int = 10_000,
    retention_days: int = 400,
) -> Settings:
    return Settings(
        mqtt=MqttSection(
            host=broker.host,
            port=broker.port,
            prefix=prefix,
            version=version,
            reconnect_min_s=0.05,
            reconnect_max_s=0.3,
        ),
        store=StoreSection(
            dsn=SecretStr(dsn), connect_timeout_s=2, events_retention_days=retention_days
        ),
        recorder=RecorderSection(
            client_id=client_id,
            share_group=share_group,
            receive_maximum=receive_maximum,
            batch_wait_ms=20,
            retry_max_s=0.2,
        ),
    )


def event(
    seq: int, *, machine: str = "m1", kind: str = "count", ts: datetime | None = None
) -> Event:
    ts = ts or now_utc()
    if kind == "count":
        data: CountData | StateData = CountData(good=seq, reject=0, total=seq, start=ts, end=ts)
    else:
        data = StateData(bucket="running", since=ts)
    draft = Draft(type=kind, ts=ts, area="a", line="l", machine=machine, data=data)  # type: ignore[arg-type]
    return draft.seal(event_id=uuid7(), seq=seq, gateway="gw-t", site="s")


def messages(events: list[Event], prefix: str) -> list[tuple[str, bytes]]:
    return [(p.topic, p.payload) for e in events for p in publications(e, prefix)]


def publish_all(broker: Broker, items: list[tuple[str, bytes]], *, retain: bool = False) -> None:
    """Publish at QoS 1 with plain paho and return once the broker acknowledged everything."""
    done = threading.Event()
    acked = 0
    lock = threading.Lock()

    def on_publish(*args: object) -> None:
        nonlocal acked
        with lock:
            acked += 1
            if acked == len(items):
                done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for sent, (topic, payload) in enumerate(items):
            # paho numbers messages with 16-bit ids: keep well below that many outstanding.
            while sent - acked > 20_000:
                time.sleep(0.001)
            info = client.publish(topic, payload, qos=1, retain=retain)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS
        if items:
            assert done.wait(120), f"only {acked} of {len(items)} acknowledged"
    finally:
        client.disconnect()
        client.loop_stop()


async def publish(broker: Broker, items: list[tuple[str, bytes]]) -> None:
    await asyncio.to_thread(publish_all, broker, items)


async def until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


async def scalar(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def rows(dsn: str) -> int:
    return await scalar(dsn, "SELECT count(*) FROM events")


async def rows_are(dsn: str, n: int) -> bool:
    return await rows(dsn) == n


@pytest.fixture
async def dsn(pg_dsn: str) -> str:
    """A fresh database with the store schema."""
    await migrate(StoreSection(dsn=SecretStr(pg_dsn)))
    return pg_dsn


@contextlib.asynccontextmanager
async def running(recorder: Recorder) -> AsyncIterator[Recorder]:
    task = asyncio.create_task(recorder.run(), name="recorder")
    try:
        await until(lambda: recorder.subscribed or task.done())
        assert not task.done(), task
        yield recorder
    finally:
        await recorder.stop()
        await task


async def create_session(settings: Settings) -> None:
    """Connect once so the broker keeps the recorder's session (and queues for it)."""
    async with running(Recorder(settings)):
        pass


class TcpProxy:
    """A TCP forwarder that can be cut and restored, to take PostgreSQL away faithfully."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and reset the live ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._links:
            writer.transport.abort()
        self._links.clear()

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._links |= {client_w, server_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_an_event_becomes_a_row(broker: Broker, prefix: str, dsn: str, version: str) -> None:
    settings = settings_for(broker, prefix, dsn, version=version)
    e = event(7, kind="state")
    async with running(Recorder(settings)) as recorder:
        await publish(broker, messages([e], prefix))
        await until(lambda: recorder.stats.acked == 1)
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow("SELECT * FROM events")
        finally:
            await conn.close()
    assert row["event_id"] == e.event_id
    assert (row["type"], row["gateway"], row["seq"]) == ("state", "gw-t", 7)
    assert (row["site"], row["area"], row["line"], row["machine"]) == ("s", "a", "l", "m1")
    assert row["topic"] == f"{prefix}/s/a/l/m1/state"
    assert recorder.stats.written == 1
    assert recorder.stats.batches == 1


async def test_wait_stored_returns_once_the_gateways_last_event_is_stored(
    broker: Broker, prefix: str, dsn: str
) -> None:
    # What an orderly stop of `mesgw run` with its recorder waits for (gateway/daemon.py).
    settings = settings_for(broker, prefix, dsn)
    async with running(Recorder(settings)) as recorder:
        assert not await recorder.wait_stored("gw-t", 1, 0.2)  # nothing yet: times out
        waiting = asyncio.create_task(recorder.wait_stored("gw-t", 30, 20))
        await publish(broker, messages([event(i) for i in range(1, 31)], prefix))
        assert await waiting
        assert await rows(dsn) == 30
        assert recorder.stored_seq == {"gw-t": 30}
        assert not await recorder.wait_stored("gw-t", 31, 0.2)
        assert await recorder.wait_stored("gw-t", 12, 0)  # already there: at once


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_events_published_while_the_recorder_is_away_arrive(
    broker: Broker, prefix: str, dsn: str, version: str
) -> None:
    settings = settings_for(broker, prefix, dsn, version=version)
    await create_session(settings)
    events = [event(i) for i in range(1, 201)]
    await publish(broker, messages(events, prefix))
    async with running(Recorder(settings)) as recorder:
        await until(lambda: recorder.stats.acked == 200)
    assert await rows(dsn) == 200
    assert recorder.stats.written == 200


async def test_malformed_payloads_become_dead_letters_and_recording_goes_on(
    broker: Broker, prefix: str, dsn: str
) -> None:
    settings = settings_for(broker, prefix, dsn)
    good = event(1)
    wrong_schema = json.loads(event(2).to_json())
    wrong_schema["schema"] = "mes.event/2"
    bad_field = json.loads(event(3).to_json())
    bad_field["data"]["good"] = -1
    count_topic = f"{prefix}/s/a/l/m1/count"
    bad = [
        (count_topic, b"not json at all"),
        (count_topic, b"\xff\xfe\x00 binary"),
        (count_topic, json.dumps(wrong_schema).encode()),
        (count_topic, json.dumps(bad_field).encode()),
        (f"{prefix}/s/a/l/m9/state", event(4).to_json()),  # the topic contradicts the payload
    ]
    cleared = (f"{prefix}/s/a/l/m1/order", b"")  # a retained value being cleared
    async with running(Recorder(settings)) as recorder:
        await publish(broker, [*bad, cleared, *messages([good], prefix)])
        await until(lambda: recorder.stats.acked == 7)
        assert recorder.stats.dead_letters == 5
        assert recorder.stats.written == 1

    conn = await asyncpg.connect(dsn)
    try:
        letters = await conn.fetch("SELECT topic, payload, error FROM dead_letters ORDER BY id")
        stored = await conn.fetch("SELECT event_id FROM events")
    finally:
        await conn.close()
    assert [(r["topic"], bytes(r["payload"])) for r in letters] == bad
    assert all(r["error"] for r in letters)
    assert "topic does not match" in letters[-1]["error"]
    assert [r["event_id"] for r in stored] == [good.event_id]

    # Everything was acknowledged, the bad ones too: nothing comes back.
    async with running(Recorder(settings)) as again:
        await asyncio.sleep(0.5)
        assert again.stats.received == 0


async def test_an_event_the_store_cannot_hold_is_dead_lettered_not_retried_forever(
    broker: Broker, prefix: str, dsn: str
) -> None:
    settings = settings_for(broker, prefix, dsn)
    huge = event(2**64)  # a valid envelope, but seq does not fit PostgreSQL's bigint
    fine = [event(1), event(2)]
    async with running(Recorder(settings)) as recorder:
        await publish(broker, messages([fine[0], huge, fine[1]], prefix))
        await until(lambda: recorder.stats.acked == 3)
        assert recorder.stats.written == 2
        assert recorder.stats.dead_letters == 1
        # The batch was written event by event; the next one goes in whole again.
        await publish(broker, messages([event(3)], prefix))
        await until(lambda: recorder.stats.acked == 4)
    conn = await asyncpg.connect(dsn)
    try:
        letter = await conn.fetchrow("SELECT payload, error FROM dead_letters")
        seqs = await conn.fetch("SELECT seq FROM events ORDER BY seq")
    finally:
        await conn.close()
    assert bytes(letter["payload"]) == huge.to_json()
    assert letter["error"].startswith("rejected by the store")
    assert [r["seq"] for r in seqs] == [1, 2, 3]


async def test_old_events_are_pruned_when_the_recorder_is_idle(
    broker: Broker, prefix: str, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "PRUNE_FIRST_S", 0.0)
    monkeypatch.setattr(recorder_module, "PRUNE_INTERVAL_S", 0.2)
    settings = settings_for(broker, prefix, dsn, retention_days=2)
    old = event(1, ts=now_utc() - timedelta(days=3))
    async with running(Recorder(settings)) as recorder:
        await publish(broker, messages([old, event(2)], prefix))
        await until(lambda: recorder.stats.written == 2)
        await until(lambda: rows_are(dsn, 1))
    assert await scalar(dsn, "SELECT seq FROM events") == 2


async def test_duplicate_deliveries_are_one_row(broker: Broker, prefix: str, dsn: str) -> None:
    settings = settings_for(broker, prefix, dsn)
    e = event(1)
    async with running(Recorder(settings)) as recorder:
        await publish(broker, messages([e, e], prefix))
        await until(lambda: recorder.stats.acked == 2)
        await publish(broker, messages([e], prefix))  # a later batch: the store drops it
        await until(lambda: recorder.stats.acked == 3)
        assert recorder.stats.written == 1
        assert recorder.stats.duplicates == 2
    assert await rows(dsn) == 1


async def test_database_outage_holds_acks_and_loses_nothing(
    broker: Broker, prefix: str, dsn: str
) -> None:
    proxy, via_proxy = proxied(dsn)
    settings = settings_for(broker, prefix, via_proxy, receive_maximum=50)
    async with running(Recorder(settings)) as recorder:
        # PostgreSQL unreachable from the start.
        await publish(broker, messages([event(i) for i in range(1, 121)], prefix))
        await until(lambda: recorder.stats.received == 50)
        await asyncio.sleep(0.5)
        # Nothing acknowledged, so the broker stopped at our Receive Maximum.
        assert recorder.stats.received == 50
        assert recorder.stats.acked == 0
        assert await rows(dsn) == 0

        await proxy.open()
        await until(lambda: recorder.stats.acked == 120)
        assert await rows(dsn) == 120

        # Lost while running: the open connection is reset.
        await proxy.cut()
        await publish(broker, messages([event(i) for i in range(121, 151)], prefix))
        await until(lambda: recorder.stats.received == 150)
        await asyncio.sleep(0.5)
        assert recorder.stats.acked == 120
        await proxy.open()
        await until(lambda: recorder.stats.acked == 150)
    assert await rows(dsn) == 150
    assert recorder.stats.written == 150
    assert recorder.stats.duplicates == 0
    await proxy.cut()


def proxied(dsn: str) -> tuple[TcpProxy, str]:
    """A proxy to the database of `dsn`, and the DSN that goes through it."""
    base, _, database = dsn.rpartition("/")
    credentials, _, host_port = base.rpartition("@")
    host, _, port = host_port.partition(":")
    proxy = TcpProxy(host, int(port or 5432))
    return proxy, f"{credentials}@127.0.0.1:{proxy.port}/{database}"


async def test_messages_held_when_the_broker_loses_our_session_are_still_written(
    broker: Broker, prefix: str, dsn: str
) -> None:
    proxy, via_proxy = proxied(dsn)
    async with running(Recorder(settings_for(broker, prefix, via_proxy))) as recorder:
        await publish(broker, messages([event(i) for i in range(1, 41)], prefix))
        await until(lambda: recorder.stats.received == 40)
        # A broker crash before its autosave: it comes back without the recorder's session,
        # so nothing the recorder holds will ever be delivered again.
        broker.kill()
        broker.start()
        await until(lambda: recorder.subscribed)
        await proxy.open()
        await until(lambda: recorder.stats.written == 40)
        assert recorder.stats.acked == 0  # the new session never delivered them
    assert await rows(dsn) == 40
    await proxy.cut()


async def test_stop_during_an_outage_leaves_the_messages_at_the_broker(
    broker: Broker, prefix: str, dsn: str
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    async with running(Recorder(settings_for(broker, prefix, nowhere))) as first:
        await publish(broker, messages([event(i) for i in range(1, 21)], prefix))
        await until(lambda: first.stats.received == 20)
    assert first.stats.acked == 0

    async with running(Recorder(settings_for(broker, prefix, dsn))) as second:
        await until(lambda: second.stats.acked == 20)
        assert second.stats.received == 20
    assert await rows(dsn) == 20


async def test_recorder_killed_before_its_commit_gets_everything_again(
    broker: Broker, prefix: str, dsn: str
) -> None:
    settings = settings_for(broker, prefix, dsn, client_id="rec-kill")
    await create_session(settings)
    events = [event(i) for i in range(1, 301)]
    await publish(broker, messages(events, prefix))

    # A recorder process whose database is unreachable: it receives, cannot commit, is killed.
    env = {
        **os.environ,
        "MESGW_MQTT__PORT": str(broker.port),
        "MESGW_MQTT__PREFIX": prefix,
        "MESGW_STORE__DSN": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        "MESGW_RECORDER__CLIENT_ID": "rec-kill",
        "MESGW_RECORDER__RETRY_MAX_S": "0.2",
    }
    script = (
        "import asyncio\n"
        "from gateway.config import Settings\n"
        "from gateway.logging import configure\n"
        "from gateway.recorder import Recorder\n"
        "configure('info', 'json')\n"
        "asyncio.run(Recorder(Settings()).run())\n"
    )
    child = subprocess.Popen(  # noqa: ASYNC220 (its output is read in a thread)
        [sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        held = await asyncio.wait_for(asyncio.to_thread(_held_batch, child), 20)
        assert held > 0
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert child.stdout is not None
        child.stdout.close()

    async with running(Recorder(settings)) as recorder:
        await until(lambda: recorder.stats.acked >= 300)
        assert recorder.stats.received == 300  # all redelivered, the held batch included
    assert await rows(dsn) == 300


def _held_batch(child: subprocess.Popen[str]) -> int:
    """The size of the batch the child holds when it reports the database unreachable."""
    assert child.stdout is not None
    for line in child.stdout:
        record = json.loads(line)
        if record.get("event") == "database unavailable":
            return int(record["held"])
    raise AssertionError("the recorder process ended without reporting the outage")


async def test_100k_events_published_while_the_recorder_is_down_all_arrive(
    broker: Broker, prefix: str, dsn: str
) -> None:
    total = 100_000
    settings = settings_for(broker, prefix, dsn, client_id="rec-100k")
    await create_session(settings)
    items = messages([event(i) for i in range(1, total + 1)], prefix)
    started = time.perf_counter()
    await publish(broker, items)
    published_s = time.perf_counter() - started

    started = time.perf_counter()
    async with running(Recorder(settings)) as recorder:
        await until(lambda: recorder.stats.acked >= total, timeout=120)
        recorded_s = time.perf_counter() - started
    assert await rows(dsn) == total
    assert recorder.stats.written == total
    print(
        f"\n100k: published in {published_s:.1f}s; recorded in {recorded_s:.1f}s "
        f"= {total / recorded_s:,.0f} events/s in {recorder.stats.batches} batches"
    )


async def test_mosquittos_default_queue_limit_would_have_lost_events(
    tmp_path: Path, prefix: str, dsn: str
) -> None:
    # The control for the test above: with Mosquitto's default of 1000 queued messages per
    # session (the shipped config lifts it), a recorder outage loses events.
    workdir = tmp_path / "default-queue"
    workdir.mkdir()
    broker = Broker(workdir=workdir, extra_conf="max_queued_messages 1000")
    broker.start()
    try:
        settings = settings_for(broker, prefix, dsn, client_id="rec-default")
        await create_session(settings)
        await publish(broker, messages([event(i) for i in range(1, 3001)], prefix))
        async with running(Recorder(settings)) as recorder:
            await until(lambda: recorder.stats.acked >= 1000)
            await asyncio.sleep(1.0)
            assert recorder.stats.received == recorder.stats.acked < 3000
    finally:
        broker.kill()
    assert await rows(dsn) < 3000


async def test_shared_subscription_splits_the_load_without_loss(
    broker: Broker, prefix: str, dsn: str
) -> None:
    one = Recorder(settings_for(broker, prefix, dsn, client_id="rec-a", share_group="grp"))
    two = Recorder(settings_for(broker, prefix, dsn, client_id="rec-b", share_group="grp"))
    async with running(one), running(two):
        await publish(broker, messages([event(i) for i in range(1, 2001)], prefix))
        await until(lambda: one.stats.acked + two.stats.acked >= 2000)
    assert one.stats.written > 0
    assert two.stats.written > 0
    assert one.stats.written + two.stats.written == 2000
    assert one.stats.duplicates + two.stats.duplicates == 0
    assert await scalar(dsn, "SELECT count(DISTINCT event_id) FROM events") == 2000
