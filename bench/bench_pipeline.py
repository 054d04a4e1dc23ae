"""Recorder throughput through a real broker (batched vs one insert per event) and end-to-end
latency from outbox append to committed row at a steady 1,000 events/s."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.table import render
from gateway.config import MqttSection, load_config
from gateway.events import SCHEMA, CountData, Draft, event_filters, publications, uuid7
from gateway.mqtt.client import publish_properties
from gateway.mqtt.publisher import Publisher
from gateway.outbox import Outbox
from gateway.recorder import Recorder
from gateway.store.migrate import migrate
from gateway.testing import Broker, temporary_database

ADMIN_DSN = os.environ.get("MESGW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _draft(i: int) -> Draft:
    now = datetime.now(UTC)
    data = CountData(good=i % 7, reject=i % 2, total=i % 7 + i % 2, start=now, end=now)
    return Draft(type="count", ts=now, area="a", line="l", machine=f"m{i % 100}", data=data)


def _write_config(tmp: Path, port: int, dsn: str, prefix: str, **recorder: Any) -> Path:
    rec = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in recorder.items())
    path = tmp / f"bench-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(
        f"""
[gateway]
id = "bench"
site = "s"
[mqtt]
port = {port}
prefix = "{prefix}"
[outbox]
path = "{tmp / "outbox.db"}"
[store]
dsn = "{dsn}"
timescaledb = "off"
[recorder]
{rec}
[logging]
level = "warning"
format = "json"
"""
    )
    return path


def _preload(port: int, prefix: str, client_id: str, n: int, version: str = "5") -> None:
    """Create the recorder's persistent session, then publish n events while it is away."""
    subscribed = threading.Semaphore(0)
    if version == "5":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        sub.on_subscribe = lambda *args: subscribed.release()
        sub.connect("127.0.0.1", port, clean_start=False, properties=props)
    else:
        sub = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        sub.on_subscribe = lambda *args: subscribed.release()
        sub.connect("127.0.0.1", port)
    sub.loop_start()
    filters = event_filters(prefix)
    for topic in filters:
        sub.subscribe(topic, qos=1)
    for _ in filters:
        if not subscribed.acquire(timeout=10):
            raise TimeoutError("no SUBACK from the broker")
    sub.disconnect()
    sub.loop_stop()

    protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    # The same MQTT 5 properties the gateway's publisher sends: the recorder decodes them.
    cfg = MqttSection(version="5" if version == "5" else "3.1.1")
    props = publish_properties(cfg, content_type="application/json", schema=SCHEMA)
    last = None
    for i in range(n):
        event = _draft(i).seal(event_id=uuid7(), seq=i + 1, gateway="bench", site="s")
        [p] = publications(event, prefix)
        last = pub.publish(p.topic, p.payload, qos=1, properties=props)
    assert last is not None
    last.wait_for_publish(timeout=300)
    pub.disconnect()
    pub.loop_stop()


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("select count(*) from events"))
    finally:
        await conn.close()


async def _recorder_rate(
    tmp: Path, broker: Broker, n: int, batch_max: int, version: str = "5"
) -> float:
    async with temporary_database(ADMIN_DSN, "mesgw_bench") as dsn:
        prefix = f"bench/{uuid.uuid4().hex[:6]}"
        client_id = f"bench-rec-{uuid.uuid4().hex[:6]}"
        conf = _write_config(
            tmp, broker.port, dsn, prefix, client_id=client_id, batch_max=batch_max
        )
        settings = load_config(conf)
        await migrate(settings.store)
        settings = settings.model_copy(
            update={"mqtt": settings.mqtt.model_copy(update={"version": version})}
        )
        await asyncio.to_thread(_preload, broker.port, prefix, client_id, n, version)
        recorder = Recorder(settings)
        started = time.perf_counter()
        task = asyncio.create_task(recorder.run(), name="bench-recorder")
        conn = await asyncpg.connect(dsn)
        try:
            while int(await conn.fetchval("select count(*) from events")) < n:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        finally:
            await conn.close()
        elapsed = time.perf_counter() - started
        if os.environ.get("MESGW_BENCH_VERBOSE"):
            print(f"recorder stats: {recorder.stats}", file=sys.stderr)
        await recorder.stop()
        task.cancel()
        return n / elapsed


async def _latency(tmp: Path, broker: Broker, rate: int, seconds: float) -> list[float]:
    async with temporary_database(ADMIN_DSN, "mesgw_bench") as dsn:
        prefix = f"bench/{uuid.uuid4().hex[:6]}"
        conf = _write_config(tmp, broker.port, dsn, prefix, client_id=f"lat-{uuid.uuid4().hex[:6]}")
        settings = load_config(conf)
        await migrate(settings.store)
        # The recorder runs in its own process, as deployed; the gateway side runs here.
        rec = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the process runs beside us
            [sys.executable, "-m", "gateway", "record", "--config", str(conf)],
            stdout=subprocess.DEVNULL,
        )
        outbox = Outbox(settings.outbox, gateway_id="bench", site="s")
        await outbox.open()
        publisher = Publisher(settings, outbox, version="bench")
        pub_task = asyncio.create_task(publisher.run(), name="bench-publisher")
        appended: dict[int, float] = {}
        seen: dict[int, float] = {}
        conn = await asyncpg.connect(dsn)
        try:
            await asyncio.sleep(1.0)  # let the recorder subscribe

            async def produce() -> None:
                per_tick = max(1, rate // 100)
                total = int(rate * seconds)
                tick = time.perf_counter()
                i = 0
                while i < total:
                    events = await outbox.append([_draft(i + k) for k in range(per_tick)])
                    now = time.perf_counter()
                    for e in events:
                        appended[e.seq] = now
                    i += per_tick
                    tick += 0.01
                    await asyncio.sleep(max(0.0, tick - time.perf_counter()))

            producer = asyncio.create_task(produce(), name="bench-producer")
            last = 0
            deadline = time.perf_counter() + seconds + 30
            while time.perf_counter() < deadline:
                rows = await conn.fetch("select seq from events where seq > $1 order by seq", last)
                now = time.perf_counter()
                for r in rows:
                    seen[r["seq"]] = now
                if rows:
                    last = rows[-1]["seq"]
                if producer.done() and len(seen) >= len(appended):
                    break
                await asyncio.sleep(0.005)
            await producer
        finally:
            await conn.close()
            await publisher.stop()
            pub_task.cancel()
            await outbox.close()
            rec.terminate()
            rec.wait(timeout=30)
        return [seen[s] - appended[s] for s in appended if s in seen]


async def run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker(workdir=tmp / "broker")
        broker.workdir.mkdir()
        broker.start()
        try:
            batched = await _recorder_rate(tmp, broker, 50_000, batch_max=5000)
            batched_311 = await _recorder_rate(tmp, broker, 50_000, batch_max=5000, version="3.1.1")
            single = await _recorder_rate(tmp, broker, 3_000, batch_max=1)
            rows += [
                {
                    "bench": "recorder via MQTT 5, batched (COPY)",
                    "value": batched,
                    "unit": "events/s",
                    "target": ">= 20000",
                },
                {
                    "bench": "recorder via MQTT 3.1.1, batched (COPY)",
                    "value": batched_311,
                    "unit": "events/s",
                    "target": ">= 20000",
                },
                {
                    "bench": "recorder via MQTT 5, one insert per event",
                    "value": single,
                    "unit": "events/s",
                    "target": "",
                },
                {
                    "bench": "recorder batched / one-by-one (MQTT 5)",
                    "value": batched / single,
                    "unit": "x",
                    "target": "",
                },
            ]
            lat = await _latency(tmp, broker, rate=1000, seconds=10)
            lat_ms = sorted(x * 1000 for x in lat)
            p50 = statistics.median(lat_ms)
            p99 = lat_ms[int(len(lat_ms) * 0.99) - 1]
            rows += [
                {
                    "bench": "end-to-end append -> committed row, p50 @1000 ev/s",
                    "value": p50,
                    "unit": "ms",
                    "target": "",
                },
                {
                    "bench": "end-to-end append -> committed row, p99 @1000 ev/s",
                    "value": p99,
                    "unit": "ms",
                    "target": "< 250",
                },
                {
                    "bench": "end-to-end events delivered",
                    "value": float(len(lat)),
                    "unit": "events",
                    "target": "10000",
                },
            ]
        finally:
            broker.kill()
    return rows


if __name__ == "__main__":
    print(render(asyncio.run(run())))
