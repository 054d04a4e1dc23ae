"""OpcUaDevice against a real asyncua server: subscriptions, polling, restarts, the watchdog."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua

from connectors.opcua.device import OpcUaDevice
from gateway.config import OpcUaConnector, TagConfig

NAMESPACE = "urn:test:plant"  # as registered by the plant_server fixture


def connector(endpoint: str, **overrides: Any) -> OpcUaConnector:
    settings: dict[str, Any] = {
        "type": "opcua",
        "endpoint": endpoint,
        "security_policy": "None",
        "publishing_interval_s": 0.05,
        "sampling_interval_s": 0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.3,
        "watchdog_s": 2.0,
        "timeout_s": 2.0,
    }
    settings.update(overrides)
    return OpcUaConnector(**settings)


def tags(**extra: TagConfig) -> dict[str, TagConfig]:
    base = {
        "good": TagConfig(role="good_count", address=f"nsu={NAMESPACE};s=Line1.Good", width=32),
        "state": TagConfig(role="state", address=f"nsu={NAMESPACE};s=Line1.State"),
        "order": TagConfig(role="order", address=f"nsu={NAMESPACE};s=Line1.Order"),
    }
    base.update(extra)
    return base


async def test_subscription_delivers_every_change_with_its_source_timestamp(
    plant_server, collector, running
):
    server = await plant_server()
    device = OpcUaDevice("filler-1", connector(server.endpoint), tags())
    async with running(device, collector):
        await collector.wait_for(lambda: collector.values("good") == [0])
        before = datetime.now(UTC)
        for n in (1, 2, 3):
            await server.write("Good", n)
            await collector.wait_for(lambda n=n: collector.values("good")[-1:] == [n])
        await server.write("Order", "WO-2")
        await collector.wait_for(lambda: collector.values("order") == ["WO-1", "WO-2"])

    assert collector.readings[0].machine == "filler-1"
    assert collector.links[0].up is True and collector.readings[0] is collector.links[0]
    assert collector.values("good") == [0, 1, 2, 3]
    assert collector.values("state") == [1]
    last = [s for s in collector.samples if s.tag == "good"][-1]
    assert last.ts.tzinfo is not None
    assert before - timedelta(seconds=1) < last.ts <= datetime.now(UTC)
    assert {s.quality for s in collector.samples} == {"good"}


async def test_status_codes_become_sample_quality(plant_server, collector, running):
    server = await plant_server()
    speed = TagConfig(role="speed", address=f"nsu={NAMESPACE};s=Line1.Speed")
    device = OpcUaDevice("m", connector(server.endpoint), tags(speed=speed))
    async with running(device, collector):
        await collector.wait_for(lambda: collector.values("speed") == [0.0])
        await server.write("Speed", 12.5, status=ua.StatusCodes.UncertainLastUsableValue)
        await collector.wait_for(lambda: sum(s.tag == "speed" for s in collector.samples) == 2)
        await server.write("Speed", 13.0, status=ua.StatusCodes.BadSensorFailure)
        await collector.wait_for(
            lambda: any(s.quality == "bad" for s in collector.samples if s.tag == "speed")
        )
    speeds = [(s.value, s.quality, s.status) for s in collector.samples if s.tag == "speed"]
    assert speeds == [
        (0.0, "good", None),
        (12.5, "uncertain", "UncertainLastUsableValue"),
        (None, "bad", "BadSensorFailure"),
    ]


async def test_a_missing_node_is_reported_and_the_others_keep_working(
    plant_server, collector, running
):
    server = await plant_server()
    extra = {
        "ghost": TagConfig(role="value", address=f"nsu={NAMESPACE};s=Line1.Nothing"),
        "elsewhere": TagConfig(role="value", address="nsu=urn:not-on-this-server;i=5"),
    }
    device = OpcUaDevice("m", connector(server.endpoint), tags(**extra))
    async with running(device, collector):
        await collector.wait_for(lambda: collector.values("good") == [0])
        await server.write("Good", 7)
        await collector.wait_for(lambda: collector.values("good") == [0, 7])
    bad = {s.tag: s for s in collector.samples if s.quality == "bad"}
    assert set(bad) == {"ghost", "elsewhere"}
    assert bad["ghost"].status == "BadNodeIdUnknown"
    assert bad["elsewhere"].status is not None
    assert "urn:not-on-this-server" in bad["elsewhere"].status
    assert all(s.value is None for s in bad.values())
    assert [link.up for link in collector.links] == [True]


async def test_server_restart_recreates_every_item_and_resolves_namespaces_again(
    plant_server, collector, running
):
    first = await plant_server()
    by_index = TagConfig(role="value", address="ns=2;s=Line1.Reject")  # index valid only at first
    device = OpcUaDevice("m", connector(first.endpoint), tags(reject=by_index))
    async with running(device, collector) as task:
        await collector.wait_for(lambda: collector.values("good") == [0])
        await first.write("Good", 5)
        await collector.wait_for(lambda: collector.values("good") == [0, 5])
        assert collector.values("reject") == [0]

        await first.stop()
        await collector.wait_for(lambda: [link.up for link in collector.links] == [True, False])
        # The restarted server has one more namespace before ours: every index moves up one.
        second = await plant_server(port=first.port, extra_namespaces=["urn:test:inserted"])
        await collector.wait_for(lambda: [link.up for link in collector.links][-1:] == [True])
        await collector.wait_for(lambda: collector.values("good")[-1:] == [0])
        await second.write("Good", 42)
        await second.write("State", 3)
        await collector.wait_for(lambda: collector.values("good")[-1:] == [42])
        await collector.wait_for(lambda: collector.values("state")[-1:] == [3])
        assert not task.done()

    down = collector.links[1]
    assert down.up is False and down.error
    # The tag addressed by namespace index now points into another namespace: reported bad.
    assert [s.quality for s in collector.samples if s.tag == "reject"][-1] == "bad"


async def test_poll_mode_reads_all_tags_every_cycle(plant_server, collector, running):
    server = await plant_server()
    ghost = TagConfig(role="value", address=f"nsu={NAMESPACE};s=Line1.Nothing")
    cfg = connector(server.endpoint, mode="poll", poll_interval_s=0.05)
    device = OpcUaDevice("m", cfg, tags(ghost=ghost))
    async with running(device, collector):
        await collector.wait_for(lambda: len(collector.values("good")) >= 3)
        await server.write("Good", 9)
        await collector.wait_for(lambda: collector.values("good")[-1:] == [9])
        await collector.wait_for(lambda: collector.values("good")[-3:] == [9, 9, 9])
    ghosts = [s for s in collector.samples if s.tag == "ghost"]
    assert len(ghosts) >= 3 and {s.status for s in ghosts} == {"BadNodeIdUnknown"}
    # one read per cycle: every tag appears in every cycle, so the counts match
    per_tag = {t: sum(1 for s in collector.samples if s.tag == t) for t in ("good", "ghost")}
    assert abs(per_tag["good"] - per_tag["ghost"]) <= 1


async def test_a_server_refusing_subscriptions_is_polled_instead(plant_server, collector, running):
    server = await plant_server()
    assert server.server is not None
    server.server.iserver.max_subscriptions = 0  # CreateSubscription: BadTooManySubscriptions
    cfg = connector(server.endpoint, mode="subscribe", poll_interval_s=0.05)
    device = OpcUaDevice("m", cfg, tags())
    async with running(device, collector):
        await collector.wait_for(lambda: len(collector.values("good")) >= 3)
        await server.write("Good", 5)
        await collector.wait_for(lambda: collector.values("good")[-2:] == [5, 5])
    # Polled: the unchanged value arrives every cycle, on one link that never dropped.
    assert collector.values("good").count(0) >= 2
    assert [link.up for link in collector.links] == [True]


async def test_poll_groups_with_their_own_interval(plant_server, collector, running):
    server = await plant_server()
    slow = TagConfig(role="state", address=f"nsu={NAMESPACE};s=Line1.State", poll_interval_s=1.0)
    device = OpcUaDevice(
        "m", connector(server.endpoint, mode="poll", poll_interval_s=0.05), tags(state=slow)
    )
    async with running(device, collector):
        await collector.wait_for(lambda: len(collector.values("good")) >= 12)
    assert 1 <= len(collector.values("state")) <= 2


async def test_absolute_deadband_suppresses_small_changes(plant_server, collector, running):
    server = await plant_server()
    speed = TagConfig(role="speed", address=f"nsu={NAMESPACE};s=Line1.Speed", deadband=1.0)
    device = OpcUaDevice("m", connector(server.endpoint), tags(speed=speed))
    async with running(device, collector):
        await collector.wait_for(lambda: collector.values("speed") == [0.0])
        await server.write("Speed", 0.5)
        await server.write("Speed", 2.0)
        await server.write("Good", 1)  # a marker: when it arrives, the speed changes have too
        await collector.wait_for(lambda: collector.values("good") == [0, 1])
        await asyncio.sleep(0.2)
    assert collector.values("speed") == [0.0, 2.0]


async def test_watchdog_reconnects_when_the_server_stops_publishing(
    plant_server, collector, running
):
    server = await plant_server()
    device = OpcUaDevice("m", connector(server.endpoint, watchdog_s=1.0), tags())
    async with running(device, collector):
        await collector.wait_for(lambda: collector.values("good") == [0])
        # Connected but silent: the server's publishing loop stops; the session stays open.
        assert server.server is not None
        for sub in list(server.server.iserver.subscription_service.subscriptions.values()):
            if sub.pub_request_callback is not None and sub._task is not None:
                sub._task.cancel()
        await collector.wait_for(lambda: [lk.up for lk in collector.links] == [True, False])
        await collector.wait_for(lambda: [lk.up for lk in collector.links] == [True, False, True])
        await server.write("Good", 8)
        await collector.wait_for(lambda: collector.values("good")[-1:] == [8])
    assert "no data or keep-alive" in (collector.links[1].error or "")


async def test_unreachable_server_reports_link_down_once_and_keeps_trying(collector, running):
    from gateway.testing import free_port

    cfg = connector(f"opc.tcp://127.0.0.1:{free_port()}/", reconnect_max_s=0.05)
    device = OpcUaDevice("m", cfg, tags())
    async with running(device, collector) as task:
        await collector.wait_for(lambda: len(collector.links) == 1)
        await asyncio.sleep(0.5)
        assert not task.done()
    assert len(collector.links) == 1
    assert collector.links[0].up is False
    assert "ConnectionRefused" in (collector.links[0].error or "")


async def test_a_failing_consumer_stops_the_device_instead_of_being_retried(plant_server):
    server = await plant_server()
    calls = 0

    async def broken(readings: Any) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("pipeline defect")

    device = OpcUaDevice("m", connector(server.endpoint), tags())
    from connectors.opcua.device import EmitFailed

    try:
        async with asyncio.timeout(10):
            await device.run(broken)
    except EmitFailed as err:
        assert "pipeline defect" in str(err)
    else:
        raise AssertionError("run() returned")
    assert calls == 1


async def test_a_state_shorter_than_a_publishing_interval_still_arrives(
    plant_server, collector, running
):
    server = await plant_server()
    device = OpcUaDevice("m", connector(server.endpoint, publishing_interval_s=0.5), tags())
    async with running(device, collector):
        await collector.wait_for(lambda: collector.values("state") == [1])
        for code in (17, 2, 6):  # fault, reset, running: all within one publish
            await server.write("State", code)
        await collector.wait_for(lambda: collector.values("state") == [1, 17, 2, 6])
    states = [s for s in collector.samples if s.tag == "state"]
    assert [s.ts for s in states] == sorted(s.ts for s in states)
