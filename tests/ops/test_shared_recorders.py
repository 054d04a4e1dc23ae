"""Three `mesgw record` processes in one shared subscription split a gateway's stream; kill -9
of one mid-stream loses nothing and doubles nothing once it is back (as systemd's
Restart=on-failure brings it back). Events and rows are counted against what was sent.

What Mosquitto does with the killed member's messages is measured here, not assumed: its
in-flight and queued QoS 1 messages stay in its persistent session (they are not handed to
the other members) and are delivered when that client id reconnects.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from ops_support import Proc, fetchval, gateway_text, get, metric, parse_metrics, spawn, wait_for
from ops_support import setup_db as migrate_db

from gateway.testing import Broker, free_port

pytestmark = pytest.mark.integration

MACHINES = 4
EVENTS_PER_MACHINE = 4000
SENT = MACHINES * EVENTS_PER_MACHINE


def synthetic_machines() -> str:
    return "".join(
        f"""
[[machines]]
id = "m{i}"
area = "a"
line = "l"
[machines.connector]
type = "synthetic"
cycle_time_s = 0.0005
count_interval_s = 0.002
events = {EVENTS_PER_MACHINE}
seed = {i}
"""
        for i in range(MACHINES)
    )


async def stored(dsn: str) -> int:
    n = await fetchval(dsn, "select count(*) from events where gateway = 'gw-ops'")
    assert isinstance(n, int)
    return n


async def test_kill_9_of_one_shared_recorder_loses_and_doubles_nothing(
    tmp_path: Path, broker: Broker, pg_dsn: str, prefix: str, procs: list[Proc]
) -> None:
    await migrate_db(pg_dsn)
    common = dict(broker_port=broker.port, prefix=prefix, dsn=pg_dsn, outbox=tmp_path / "o.db")
    extra = '[recorder]\nshare_group = "recorders"\n'

    def recorder(name: str, port: int) -> Proc:
        conf = tmp_path / f"{name}.toml"
        text = gateway_text(**common, metrics_port=port, client_id=name)  # type: ignore[arg-type]
        conf.write_text(text.replace("[recorder]\n", extra, 1))
        return spawn(procs, tmp_path, name, ["record", "--config", str(conf)])

    ports = {name: free_port() for name in ("rec-a", "rec-b", "rec-c")}
    recs = {name: recorder(name, port) for name, port in ports.items()}

    async def scrape(port: int) -> dict[str, float]:
        return parse_metrics((await get(f"http://127.0.0.1:{port}/metrics"))[1])

    async def subscribed() -> bool:
        try:
            scraped = [await scrape(p) for p in ports.values()]
        except OSError:
            return False
        return all(metric(s, "mesgw_recorder_mqtt_subscribed") == 1 for s in scraped)

    await wait_for(subscribed, 60, "three recorders subscribed")
    gw_port = free_port()
    conf = tmp_path / "gw.toml"
    conf.write_text(gateway_text(**common, metrics_port=gw_port, machines=synthetic_machines()))  # type: ignore[arg-type]
    started = time.monotonic()
    gw = spawn(procs, tmp_path, "gateway", ["run", "--config", str(conf)])

    async def a_fifth() -> bool:
        return await stored(pg_dsn) >= SENT // 5

    await wait_for(a_fifth, 120, "a fifth of the stream stored")
    recs["rec-b"].kill()  # kill -9 mid-stream: in flight, unacknowledged, at the broker
    killed_at = time.monotonic()

    async def all_sent() -> bool:
        scraped = await scrape(gw_port)
        return (
            metric(scraped, "mesgw_rules_events_total") >= SENT
            and metric(scraped, "mesgw_outbox_depth") == 0
        )

    await wait_for(all_sent, 180, "the gateway to have every event acknowledged by the broker")
    sent_at = time.monotonic()

    # The two survivors record what reaches them; what was the killed one's stays in its
    # session at the broker.
    previous = -1
    while (now := await stored(pg_dsn)) != previous:
        previous = now
        await asyncio.sleep(2)
    held_by_dead_session = SENT - previous
    print(
        f"\nshared recorders: {SENT} events; after kill -9 of one of three, "
        f"{held_by_dead_session} waited in its session at the broker"
    )
    assert held_by_dead_session > 0, "Mosquitto handed the dead member's messages on"

    restarted = time.monotonic()
    recs["rec-b"] = recorder("rec-b", ports["rec-b"])  # what systemd's Restart= does

    async def everything() -> bool:
        return await stored(pg_dsn) >= SENT

    await wait_for(everything, 120, "every event stored after the restart")
    caught_up = time.monotonic() - restarted
    print(
        f"shared recorders: caught up {caught_up:.1f} s after the restart; "
        f"stream of {SENT} sent in {sent_at - started:.1f} s (kill at "
        f"{killed_at - started:.1f} s)"
    )
    # Nothing lost, nothing doubled: every seq once, typed rows once per event.
    assert await stored(pg_dsn) == SENT
    distinct = await fetchval(pg_dsn, "select count(distinct seq) from events")
    assert distinct == SENT
    assert await fetchval(pg_dsn, "select min(seq)::int from events") == 1
    assert await fetchval(pg_dsn, "select max(seq)::int from events") == SENT
    count_events = await fetchval(pg_dsn, "select count(*) from events where type = 'count'")
    assert await fetchval(pg_dsn, "select count(*) from counts") == count_events
    sent_good = await fetchval(
        pg_dsn, "select sum((data->>'good')::int) from events where type = 'count'"
    )
    assert await fetchval(pg_dsn, "select sum(good) from counts") == sent_good
    # Every member took part, the killed one before and after its restart.
    for name, port in ports.items():
        rows = metric(await scrape(port), "mesgw_recorder_rows_total")
        assert rows > 0, f"{name} recorded nothing"
    assert gw.stop() == 0
    for proc in recs.values():
        assert proc.stop() == 0
