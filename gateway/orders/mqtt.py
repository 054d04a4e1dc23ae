"""Work-order commands over MQTT: `…/{machine}/cmd/order` in, a reply out.

Every command gets exactly one reply on `<command topic>/reply` (QoS 1, not retained), and
an MQTT 5 request that names a response topic gets it there as well, with its correlation
data echoed (once, when the two topics are the same). The reply is
`{"ok", "machine", "order_id", "status", "error", "request_id"}`; `error` says why a command
was refused: malformed JSON, a wrong field, an unknown machine, a stale command, or the
desk's own refusal (another order running, no such order).

The listener keeps its own connection with a clean session: commands sent while the
gateway is away are not queued for it, so an old command never starts an order hours
later. The same holds while it runs: MQTT 5 senders set a message expiry (the broker drops
the command when it passes), and a command whose `ts`/`sent_at` is older than
`orders.command_max_age_s` is refused. Retained commands are refused too (and not
requested from an MQTT 5 broker): they would run again on every reconnect.

Commands are taken one at a time, in arrival order, so two commands for one machine are
never applied out of order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, MQTTMessage, topic_matches_sub
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.events import event_filters, now_utc
from gateway.logging import get_logger
from gateway.mqtt.client import (
    JSON,
    Connected,
    Message,
    MqttClient,
    NotConnected,
    PublishRefused,
    SessionOptions,
    SubAck,
)
from gateway.orders.commands import CommandError, parse_mqtt, refusal, reply, request_id_of
from gateway.orders.desk import OrderDesk
from gateway.waiting import wait_event

log = get_logger("gateway.orders.mqtt")

REPLY_SCHEMA = "mes.order-reply/1"
# MQTT 5 retain handling 2: never send retained messages on subscribe.
_NO_RETAINED = 2
# Commands waiting for the desk; above this the network thread stops reading and the broker
# (or TCP) holds the rest.
_HIGH_WATER = 256


@dataclass(frozen=True, slots=True)
class Request(Message):
    """A delivered command with what an MQTT 5 requester asked for its reply."""

    response_topic: str | None = None
    correlation_data: bytes | None = None


class _RequestClient(MqttClient):
    """An MqttClient whose deliveries keep the response topic and correlation data."""

    def _net_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # paho leaves Nagle on: a reply written right after the command's PUBACK would wait
        # for the broker's delayed ACK of that PUBACK, ~40 ms on every command.
        sock = client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super()._net_connect(client, userdata, flags, reason_code, properties)

    def _net_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        try:
            topic = message._topic.decode()
        except UnicodeDecodeError:
            topic = repr(message._topic)
        self._report(
            Request(
                topic=topic,
                payload=bytes(message.payload),
                qos=message.qos,
                retain=bool(message.retain),
                dup=bool(message.dup),
                mid=message.mid,
                epoch=self._net_epoch,
                response_topic=response_topic if isinstance(response_topic, str) else None,
                correlation_data=bytes(correlation) if correlation is not None else None,
            )
        )


class OrderCommandListener:
    """Answers work-order commands on the MQTT command topics of this gateway's machines."""

    def __init__(
        self,
        settings: Settings,
        desk: OrderDesk,
        *,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        cfg = settings.mqtt
        site = settings.gateway.site
        self._desk = desk
        self._clock = clock
        self._max_age_s = settings.orders.command_max_age_s
        self._root = f"{cfg.prefix}/{site}/"
        self._filter = f"{cfg.prefix}/{site}/+/+/+/cmd/order"
        self._machines = {(m.area, m.line, m.id): m.id for m in settings.machines}
        self._reserved = [
            *event_filters(cfg.prefix),
            f"{cfg.prefix}/+/+/+/+/downtime/active",
            f"{cfg.prefix}/+/+/+/+/cmd/order",
            f"{cfg.prefix}/+/gateway/+/status",
        ]
        self._v5 = cfg.version == "5"
        client_id = cfg.client_id or f"mesgw-{settings.gateway.id}"
        session = SessionOptions(client_id=f"{client_id}-orders", clean_start=True)
        self._client = _RequestClient(cfg, session, name="orders")
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        expiry = math.ceil(self._max_age_s) if self._max_age_s > 0 else None
        self._expiry_s = expiry
        self._queue: collections.deque[Request] = collections.deque()
        self._arrived = asyncio.Event()
        self._stop = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._running = False
        self._done = asyncio.Event()
        self.handled = 0  # commands the desk answered
        self.refused = 0  # commands refused before reaching the desk

    @property
    def topic_filter(self) -> str:
        return self._filter

    @property
    def connected(self) -> bool:
        return self._client.connected

    @property
    def pending(self) -> int:
        """Commands received and waiting for the desk."""
        return len(self._queue)

    async def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker granted the command subscription (at least once)."""
        return await wait_event(self._subscribed, timeout)

    async def run(self) -> None:
        """Answer commands until `stop()`; cancelled, it drops the connection at once."""
        if self._running or self._done.is_set():
            raise RuntimeError("OrderCommandListener.run() can only be called once")
        self._running = True
        self._client.start()
        clean = False
        try:
            await self._serve()
            # Received but not applied: the sender hears so instead of waiting in vain.
            while self._queue:
                request = self._queue.popleft()
                self._answer(
                    request,
                    refusal(
                        self._topic_machine(request.topic),
                        "gateway is stopping; command not applied, send it again later",
                        request_id_of(request.payload),
                    ),
                )
            await self._client.close()
            clean = True
        finally:
            if not clean:
                self._client.abort()
                await self._client.wait_stopped()
            self._done.set()

    async def stop(self) -> None:
        """Finish the command in progress, refuse those still queued, disconnect."""
        self._stop.set()
        self._arrived.set()
        if self._running:
            await self._done.wait()

    # -- MQTT events (on the event loop) ----------------------------------------------------

    def _on_connect(self, info: Connected) -> None:
        self._client.subscribe(
            [self._filter], qos=1, retain_handling=_NO_RETAINED if self._v5 else 0
        )

    def _on_subscribe(self, ack: SubAck) -> None:
        if ack.refused:
            log.error("broker refused the order command subscription", reasons=ack.refused)
        elif not self._subscribed.is_set():
            log.info("listening for order commands", filter=self._filter)
            self._subscribed.set()

    def _on_message(self, message: Message) -> None:
        if not isinstance(message, Request):  # every delivery of _RequestClient is one
            message = Request(
                message.topic,
                message.payload,
                message.qos,
                message.retain,
                message.dup,
                message.mid,
                message.epoch,
            )
        self._queue.append(message)
        self._arrived.set()
        if len(self._queue) >= _HIGH_WATER:
            self._client.pause_reading(True)

    # -- commands -----------------------------------------------------------------------------

    async def _serve(self) -> None:
        while not self._stop.is_set():
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            request = self._queue.popleft()
            if len(self._queue) <= _HIGH_WATER // 2:
                self._client.pause_reading(False)
            self._answer(request, await self._apply(request))

    async def _apply(self, request: Request) -> dict[str, Any]:
        """The reply to one command: the desk's answer, or why it never got there."""
        machine = self._topic_machine(request.topic)
        try:
            if request.retain:
                raise CommandError(
                    "retained command refused: publish commands with retain=false, and clear "
                    "this one with an empty retained message"
                )
            problem = self._response_topic_problem(request.response_topic)
            if problem is not None:
                raise CommandError(problem)
            machine_id = self._known_machine(request.topic)
            command, request_id = parse_mqtt(
                request.payload, machine=machine_id, now=self._clock(), max_age_s=self._max_age_s
            )
        except CommandError as err:
            self.refused += 1
            request_id = err.request_id or request_id_of(request.payload)
            log.info("order command refused", origin="mqtt", topic=request.topic, error=err.error)
            return refusal(machine, err.error, request_id)
        try:
            result = await self._desk.submit(command)
        except GatewayError as err:
            log.warning("order command failed", origin="mqtt", machine=machine, error=str(err))
            return refusal(machine, str(err), request_id)
        except Exception:
            log.exception("order desk failed on a command", command=repr(command))
            return refusal(machine, "internal error; see the gateway log", request_id)
        self.handled += 1
        log.info(
            "order command",
            origin="mqtt",
            machine=command.machine,
            action=command.action,
            order_id=result.order_id or command.order_id,
            ok=result.ok,
            status=result.status,
            error=result.error,
        )
        return reply(result, request_id)

    def _topic_machine(self, topic: str) -> str | None:
        """The machine segment of a command topic (known or not)."""
        parts = topic.removeprefix(self._root).split("/")
        return parts[2] if len(parts) == 5 else None

    def _known_machine(self, topic: str) -> str:
        parts = topic.removeprefix(self._root).split("/")
        if not topic.startswith(self._root) or len(parts) != 5 or parts[3:] != ["cmd", "order"]:
            raise CommandError(f"not a command topic: {topic}")
        machine = self._machines.get((parts[0], parts[1], parts[2]))
        if machine is None:
            raise CommandError(f"unknown machine {'/'.join(parts[:3])} on this gateway")
        return machine

    def _response_topic_problem(self, topic: str | None) -> str | None:
        """Why a requester's response topic cannot take the reply; None when it can."""
        if topic is None:
            return None
        if (
            not topic
            or any(c in topic for c in "+#\0")
            or topic.startswith("$")
            or len(topic.encode()) > 65535
        ):
            return f"response topic {topic!r} is not a topic name one can publish to"
        # A reply must not pose as an event, a status or a command: the recorder and the
        # dashboards read those topics.
        if any(topic_matches_sub(f, topic) for f in self._reserved):
            return f"response topic {topic!r} is one of the gateway's event or command topics"
        parts = topic.removeprefix(self._root).split("/") if topic.startswith(self._root) else []
        own = len(parts) >= 3 and (parts[0], parts[1], parts[2]) in self._machines
        if (own and parts[3:] != ["cmd", "order", "reply"]) or parts[:1] == ["gateway"]:
            return f"response topic {topic!r} is one of this gateway's own topics"
        return None

    def _answer(self, request: Request, body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        own = f"{request.topic}/reply"
        targets: list[tuple[str, bytes | None]] = [(own, None)]
        response_topic = request.response_topic
        if response_topic is not None and self._response_topic_problem(response_topic) is None:
            if response_topic == own:
                targets = [(own, request.correlation_data)]
            else:
                targets.append((response_topic, request.correlation_data))
        for topic, correlation in targets:
            try:
                self._client.publish(
                    topic, payload, qos=1, retain=False, properties=self._props(correlation)
                )
            except (NotConnected, PublishRefused) as err:
                # The command is applied (or refused) all the same; commands are idempotent,
                # so a sender that hears nothing can safely send it again.
                log.warning("order reply not sent", topic=topic, error=str(err))

    def _props(self, correlation: bytes | None) -> Properties | None:
        if not self._v5:
            return None
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = JSON
        props.UserProperty = ("schema", REPLY_SCHEMA)
        if correlation is not None:
            props.CorrelationData = correlation
        if self._expiry_s is not None:
            props.MessageExpiryInterval = self._expiry_s
        return props
