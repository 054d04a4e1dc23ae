"""Twelve machines on one real asyncua server that allows ten connections: they share one
session (a subscription each); capped at one machine per session, the two that get no
session say which limit stopped them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from asyncua import Server, ua

from connectors.opcua.device import OpcUaDevice
from connectors.sample import Link, Reading, Sample
from gateway.config import OpcUaConnector, TagConfig
from gateway.testing import free_port

MACHINES = 12
SERVER_ALLOWS = 10  # connections, as small PLCs allow


@pytest.fixture
async def plc() -> AsyncIterator[tuple[Server, str]]:
    port = free_port()
    server = Server()
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{port}/"
    server.set_endpoint(endpoint)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:test:twelve")
    for i in range(MACHINES):
        obj = await server.nodes.objects.add_object(ua.NodeId(f"m{i}", idx), f"m{i}")
        await obj.add_variable(
            ua.NodeId(f"m{i}.good", idx), "good", ua.Variant(i, ua.VariantType.UInt32)
        )
    server.iserver.max_connections = SERVER_ALLOWS
    await server.start()
    try:
        yield server, endpoint
    finally:
        await server.stop()


class Seen:
    def __init__(self) -> None:
        self.samples: dict[str, list[Sample]] = {}
        self.links: dict[str, list[Link]] = {}

    async def __call__(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            if isinstance(r, Sample):
                self.samples.setdefault(r.machine, []).append(r)
            else:
                self.links.setdefault(r.machine, []).append(r)


def devices(endpoint: str, machines_per_session: int) -> list[OpcUaDevice]:
    cfg = OpcUaConnector(
        type="opcua",
        endpoint=endpoint,
        security_policy="None",
        publishing_interval_s=0.1,
        watchdog_s=2.0,
        reconnect_min_s=0.2,
        reconnect_max_s=0.5,
    )
    return [
        OpcUaDevice(
            f"m{i}",
            cfg,
            {
                "good": TagConfig(
                    role="good_count", address=f"nsu=urn:test:twelve;s=m{i}.good", width=32
                )
            },
            machines_per_session=machines_per_session,
        )
        for i in range(MACHINES)
    ]


async def eventually(done: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if done():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


async def run_until(
    devs: list[OpcUaDevice], seen: Seen, done: Callable[[], bool], timeout: float = 30.0
) -> None:
    tasks = [asyncio.create_task(d.run(seen), name=f"opcua:{d.machine}") for d in devs]
    try:
        await eventually(done, timeout)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_twelve_machines_share_one_session(plc: tuple[Server, str]) -> None:
    server, endpoint = plc
    seen = Seen()
    peak = 0

    def all_read() -> bool:
        nonlocal peak
        peak = max(peak, len(server.bserver.clients))  # type: ignore[union-attr]
        return all(seen.samples.get(f"m{i}") for i in range(MACHINES))

    await run_until(devices(endpoint, 0), seen, all_read)
    assert peak == 1  # one connection (and session) for all twelve
    for i in range(MACHINES):
        assert seen.samples[f"m{i}"][0].value == i  # each machine its own subscription
        assert [link.up for link in seen.links[f"m{i}"]] == [True]


async def test_a_refused_session_names_the_limit(plc: tuple[Server, str]) -> None:
    _, endpoint = plc
    seen = Seen()
    devs = devices(endpoint, 1)

    def explained() -> bool:
        up = [d for d in devs if d.link_up]
        down = [d for d in devs if "held 10 others" in (d.last_error or "")]
        return len(up) == SERVER_ALLOWS and len(down) == MACHINES - SERVER_ALLOWS

    await run_until(devs, seen, explained)
    error = next(d.last_error for d in devs if not d.link_up) or ""
    assert f"it allows {SERVER_ALLOWS} session(s) to this gateway" in error
    assert f"{MACHINES} machines at opcua.machines_per_session = 1 need {MACHINES}" in error
    # The link went down once with the reason, however often the session is retried.
    for d in devs:
        if not d.link_up:
            links = seen.links[d.machine]
            assert [link.up for link in links] == [False]
            assert "opcua.machines_per_session = 1" in (links[0].error or "")


async def test_a_session_lost_takes_every_machine_down_and_back(plc: tuple[Server, str]) -> None:
    server, endpoint = plc
    seen = Seen()
    devs = devices(endpoint, 0)[:3]
    tasks = [asyncio.create_task(d.run(seen)) for d in devs]
    try:
        await eventually(lambda: len(seen.samples) == 3)
        for client in list(server.bserver.clients):  # type: ignore[union-attr]
            client.transport.close()  # the connection drops under the session
        await eventually(
            lambda: all(
                [link.up for link in seen.links.get(d.machine, [])][-3:] == [True, False, True]
                for d in devs
            )
        )
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert all(d.counters.reconnects == 1 for d in devs)
