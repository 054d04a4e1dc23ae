"""Work-order commands over a real Mosquitto: every command answered, MQTT 5 and 3.1.1."""

from __future__ import annotations

import asyncio
import json
import queue
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from orders_support import SITE, MemoryDesk, Requester, settings_for

from gateway.events import now_utc
from gateway.orders.mqtt import REPLY_SCHEMA, OrderCommandListener
from gateway.testing import Broker
from rules.inputs import CommandResult, OrderCommand

pytestmark = pytest.mark.integration


def command_topic(prefix: str, machine: str = "filler-1") -> str:
    return f"{prefix}/{SITE}/packaging/line-1/{machine}/cmd/order"


@asynccontextmanager
async def listening(
    broker: Broker, prefix: str, desk: object, *, version: str = "5", max_age_s: float = 60
) -> AsyncIterator[OrderCommandListener]:
    settings = settings_for(broker, prefix, version=version, max_age_s=max_age_s)
    listener = OrderCommandListener(settings, desk)  # type: ignore[arg-type]
    task = asyncio.create_task(listener.run(), name="orders-mqtt")
    try:
        assert await listener.wait_subscribed(5), "listener did not subscribe"
        yield listener
    finally:
        await asyncio.wait_for(listener.stop(), 10)
        await task


@asynccontextmanager
async def requester(
    broker: Broker, prefix: str, *extra: str, version: str = "5"
) -> AsyncIterator[Requester]:
    req = Requester(broker, [f"{prefix}/+/+/+/+/cmd/order/reply", *extra], version=version)
    try:
        yield req
    finally:
        req.close()


def payload(**body: object) -> bytes:
    return json.dumps(body).encode()


async def test_mqtt5_reply_on_reply_topic_and_response_topic_with_correlation(
    broker: Broker, prefix: str, desk: MemoryDesk
) -> None:
    topic = command_topic(prefix)
    inbox = f"{prefix}/clients/erp-7/inbox"
    async with listening(broker, prefix, desk), requester(broker, prefix, inbox) as req:
        body = payload(action="start", order_id="WO-1", quantity=100, request_id="r-1")
        await req.send(topic, body, response_topic=inbox, correlation=b"\x00corr-1")
        replies = {r.topic: r for r in [await req.reply(), await req.reply()]}
        await req.no_more(0.3)
    assert set(replies) == {f"{topic}/reply", inbox}
    expected = {
        "ok": True,
        "machine": "filler-1",
        "order_id": "WO-1",
        "status": "running",
        "error": None,
        "request_id": "r-1",
    }
    for reply in replies.values():
        assert reply.body == expected
        assert reply.content_type == "application/json"
        assert ("schema", REPLY_SCHEMA) in reply.user
        assert reply.expiry is not None and 0 < reply.expiry <= 60
    assert replies[inbox].correlation_data == b"\x00corr-1"
    assert replies[f"{topic}/reply"].correlation_data is None
    [cmd] = desk.commands
    assert (cmd.machine, cmd.action, cmd.order_id, cmd.quantity, cmd.origin) == (
        "filler-1",
        "start",
        "WO-1",
        100,
        "mqtt",
    )


async def test_response_topic_equal_to_reply_topic_gets_one_reply(
    broker: Broker, prefix: str, desk: MemoryDesk
) -> None:
    topic = command_topic(prefix)
    async with listening(broker, prefix, desk), requester(broker, prefix) as req:
        await req.send(
            topic, payload(action="stop"), response_topic=f"{topic}/reply", correlation=b"c-2"
        )
        reply = await req.reply()
        await req.no_more(0.3)
    assert reply.correlation_data == b"c-2"
    assert reply.body["ok"] is False and reply.body["error"] == "no order is running on filler-1"


async def test_mqtt311_lifecycle_idempotent_and_errors(
    broker: Broker, prefix: str, desk: MemoryDesk
) -> None:
    topic = command_topic(prefix)
    async with (
        listening(broker, prefix, desk, version="3.1.1"),
        requester(broker, prefix, version="3.1.1") as req,
    ):

        async def ask(**body: object) -> dict[str, object]:
            await req.send(topic, payload(**body))
            reply = await req.reply()
            assert reply.topic == f"{topic}/reply"
            assert reply.content_type is None  # 3.1.1 has no properties
            return reply.body

        assert (await ask(action="start", order_id="WO-1"))["status"] == "running"
        again = await ask(action="start", order_id="WO-1")  # idempotent
        assert (again["ok"], again["status"]) == (True, "running")
        other = await ask(action="start", order_id="WO-2")
        assert (other["ok"], other["error"]) == (False, "order WO-1 is running; stop it first")
        wrong = await ask(action="stop", order_id="WO-9")
        assert wrong["error"] == "order WO-9 is not running (WO-1 is)"
        done = await ask(action="stop", order_id="WO-1")
        assert (done["ok"], done["order_id"], done["status"]) == (True, "WO-1", "completed")
        assert (await ask(action="stop", order_id="WO-1"))["ok"] is True  # idempotent
        nothing = await ask(action="stop")
        assert nothing["error"] == "no order is running on filler-1"
    assert desk.active == {} and desk.completed == {"WO-1": "filler-1"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "empty payload: a command is a JSON object"),
        (b"start WO-1", "payload is not JSON"),
        (b'"start"', "payload must be a JSON object"),
        (b'{"action": "start", "order_id": "W", "qty": 5, "request_id": "r-5"}', "qty: unknown"),
    ],
)
async def test_malformed_payload_is_an_error_reply_and_the_listener_goes_on(
    broker: Broker, prefix: str, desk: MemoryDesk, body: bytes, error: str
) -> None:
    topic = command_topic(prefix)
    async with listening(broker, prefix, desk) as listener, requester(broker, prefix) as req:
        await req.send(topic, body)
        bad = await req.reply()
        await req.send(topic, payload(action="start", order_id="WO-1"))
        good = await req.reply()
        assert listener.refused == 1 and listener.handled == 1
    assert bad.body["ok"] is False and bad.body["error"].startswith(error)
    assert bad.body["machine"] == "filler-1"
    assert bad.body["request_id"] == ("r-5" if b"r-5" in body else None)
    assert good.body["ok"] is True
    assert [c.order_id for c in desk.commands] == ["WO-1"]


async def test_unknown_machine_is_an_error_reply(
    broker: Broker, prefix: str, desk: MemoryDesk
) -> None:
    topic = command_topic(prefix, "press-9")
    async with listening(broker, prefix, desk), requester(broker, prefix) as req:
        await req.send(topic, payload(action="start", order_id="WO-1", request_id="r-3"))
        reply = await req.reply()
    assert reply.topic == f"{topic}/reply"
    assert reply.body == {
        "ok": False,
        "machine": "press-9",
        "order_id": None,
        "status": None,
        "error": "unknown machine packaging/line-1/press-9 on this gateway",
        "request_id": "r-3",
    }
    assert desk.commands == []


async def test_stale_command_is_refused(broker: Broker, prefix: str, desk: MemoryDesk) -> None:
    topic = command_topic(prefix)
    old = (now_utc() - timedelta(seconds=30)).isoformat()
    async with listening(broker, prefix, desk, max_age_s=10), requester(broker, prefix) as req:
        await req.send(topic, payload(action="start", order_id="WO-1", sent_at=old))
        reply = await req.reply()
    assert reply.body["error"].startswith("command is stale: sent 30.")
    assert desk.commands == []


@pytest.mark.parametrize(
    ("suffix", "error"),
    [
        ("x/+/y", "is not a topic name one can publish to"),
        ("{prefix}/other-site/a/l/m/count", "is one of the gateway's event or command topics"),
        ("{prefix}/plant/a/l/m/downtime/active", "is one of the gateway's event or command"),
        ("{prefix}/plant/gateway/gw-t/status", "is one of the gateway's event or command"),
        ("{prefix}/plant/packaging/line-1/capper-1/cmd/order", "is one of the gateway's event"),
        ("{prefix}/plant/packaging/line-1/capper-1/notes", "is one of this gateway's own topics"),
        ("{prefix}/plant/gateway/audit", "is one of this gateway's own topics"),
    ],
)
async def test_response_topic_that_would_pose_as_gateway_data_is_refused(
    broker: Broker, prefix: str, desk: MemoryDesk, suffix: str, error: str
) -> None:
    topic = command_topic(prefix)
    response_topic = suffix.format(prefix=prefix)
    async with listening(broker, prefix, desk), requester(broker, prefix) as req:
        await req.send(topic, payload(action="start", order_id="A"), response_topic=response_topic)
        reply = await req.reply()
        await req.no_more(0.2)
    assert reply.topic == f"{topic}/reply"
    assert reply.body["error"].startswith(f"response topic {response_topic!r} {error}")
    assert desk.commands == []


async def test_retained_command_is_not_run_again(
    broker: Broker, prefix: str, desk: MemoryDesk
) -> None:
    """A retained command left at the broker must not run on every (re)subscription."""
    topic = command_topic(prefix)
    async with requester(broker, prefix, version="3.1.1") as req:
        await req.send(topic, payload(action="start", order_id="WO-1"), retain=True)
        # MQTT 5: the listener asks the broker not to send retained messages at all.
        async with listening(broker, prefix, desk):
            await req.no_more(0.5)
        # 3.1.1 cannot ask that: the retained copy arrives flagged and is refused.
        async with listening(broker, prefix, desk, version="3.1.1"):
            reply = await req.reply()
    assert reply.body["error"].startswith("retained command refused")
    assert desk.commands == []


class SlowDesk(MemoryDesk):
    """Holds every command until released, to catch the listener with commands queued."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def submit(self, cmd: OrderCommand) -> CommandResult:
        self.entered.set()
        await self.release.wait()
        return await super().submit(cmd)


async def test_stop_finishes_the_command_in_progress_and_refuses_the_queued(
    broker: Broker, prefix: str
) -> None:
    desk = SlowDesk()
    topic = command_topic(prefix)
    async with requester(broker, prefix) as req:
        async with listening(broker, prefix, desk) as listener:
            await req.send(topic, payload(action="start", order_id="WO-1"))
            await asyncio.wait_for(desk.entered.wait(), 5)
            await req.send(topic, payload(action="stop", request_id="r-late"))
            for _ in range(500):  # the second command reaches the queue
                if listener.pending:
                    break
                await asyncio.sleep(0.01)
            assert listener.pending == 1
            stopping = asyncio.create_task(listener.stop())
            await asyncio.sleep(0.05)
            assert not stopping.done()  # waits for the command in progress
            desk.release.set()
            await stopping
        first, second = await req.reply(), await req.reply()
    assert (first.body["ok"], first.body["status"]) == (True, "running")
    assert second.body["request_id"] == "r-late"
    assert second.body["error"] == "gateway is stopping; command not applied, send it again later"
    assert [c.action for c in desk.commands] == ["start"]


class BrokenDesk(MemoryDesk):
    async def submit(self, cmd: OrderCommand) -> CommandResult:
        if cmd.order_id == "BOOM":
            raise RuntimeError("engine defect")
        return await super().submit(cmd)


async def test_a_desk_failure_is_an_error_reply_not_a_crash(broker: Broker, prefix: str) -> None:
    desk = BrokenDesk()
    topic = command_topic(prefix)
    async with listening(broker, prefix, desk), requester(broker, prefix) as req:
        await req.send(topic, payload(action="start", order_id="BOOM"))
        broken = await req.reply()
        await req.send(topic, payload(action="start", order_id="WO-1"))
        fine = await req.reply()
    assert broken.body["error"] == "internal error; see the gateway log"
    assert fine.body["ok"] is True


async def test_listener_resubscribes_after_the_broker_restarts(
    broker: Broker, prefix: str, desk: MemoryDesk
) -> None:
    topic = command_topic(prefix)
    async with listening(broker, prefix, desk) as listener:
        broker.stop()
        broker.start()
        async with requester(broker, prefix) as req:
            # The listener's session was clean: it answers again once it has resubscribed.
            for _ in range(100):
                await req.send(topic, payload(action="start", order_id="WO-1"))
                try:
                    reply = await req.reply(timeout=0.2)
                except queue.Empty:  # not subscribed again yet
                    continue
                break
            else:
                raise AssertionError("no reply after the broker restart")
        assert listener.connected
    assert reply.body["ok"] is True
