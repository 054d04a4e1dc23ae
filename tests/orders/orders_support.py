"""Helpers for the work-order tests: a desk double, gateway settings, a plain MQTT requester.

`MemoryDesk` is a test double of the rules engine's order handling (the engine is tested on
its own): it keeps just enough rules — one active order per machine, idempotent start and
stop, an error for a command that matches nothing — for the sources' replies to mean
something.
"""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import (
    GatewaySection,
    MachineConfig,
    MqttSection,
    OrdersSection,
    Settings,
    SyntheticConnector,
)
from gateway.orders.desk import ScheduleRejected
from gateway.testing import Broker
from rules.inputs import CommandResult, OrderCommand, PlannedOrder

SITE = "plant"
MACHINES = (("packaging", "line-1", "filler-1"), ("packaging", "line-1", "capper-1"))


class MemoryDesk:
    """In-memory desk: the order rules the command sources rely on, nothing more."""

    def __init__(self) -> None:
        self.active: dict[str, OrderCommand] = {}  # machine → the start command running
        self.completed: dict[str, str] = {}  # order id → machine it ran on
        self.planned: dict[str, PlannedOrder] = {}
        self.commands: list[OrderCommand] = []

    async def submit(self, cmd: OrderCommand) -> CommandResult:
        self.commands.append(cmd)
        if cmd.action == "start":
            return self._start(cmd)
        return self._stop(cmd)

    def _start(self, cmd: OrderCommand) -> CommandResult:
        assert cmd.order_id is not None
        running = self.active.get(cmd.machine)
        if running is not None and running.order_id == cmd.order_id:
            return CommandResult(True, cmd.machine, cmd.order_id, "running")
        if running is not None:
            return self._no(cmd, f"order {running.order_id} is running; stop it first")
        if cmd.order_id in self.completed:
            return self._no(cmd, f"order {cmd.order_id} is completed")
        for machine, other in self.active.items():
            if other.order_id == cmd.order_id:
                return self._no(cmd, f"order {cmd.order_id} is running on {machine}")
        plan = self.planned.get(cmd.order_id)
        if plan is not None and plan.machine not in (None, cmd.machine):
            return self._no(cmd, f"order {cmd.order_id} is planned for {plan.machine}")
        self.planned.pop(cmd.order_id, None)
        self.active[cmd.machine] = cmd
        return CommandResult(True, cmd.machine, cmd.order_id, "running")

    def _stop(self, cmd: OrderCommand) -> CommandResult:
        running = self.active.get(cmd.machine)
        if running is None:
            if cmd.order_id is not None and self.completed.get(cmd.order_id) == cmd.machine:
                return CommandResult(True, cmd.machine, cmd.order_id, "completed")
            return self._no(cmd, f"no order is running on {cmd.machine}")
        if cmd.order_id is not None and cmd.order_id != running.order_id:
            return self._no(cmd, f"order {cmd.order_id} is not running ({running.order_id} is)")
        del self.active[cmd.machine]
        assert running.order_id is not None
        self.completed[running.order_id] = cmd.machine
        return CommandResult(True, cmd.machine, running.order_id, "completed")

    @staticmethod
    def _no(cmd: OrderCommand, error: str) -> CommandResult:
        return CommandResult(False, cmd.machine, cmd.order_id, None, error)

    async def plan(self, orders: Sequence[PlannedOrder]) -> int:
        busy = {c.order_id for c in self.active.values()} | set(self.completed)
        clash = sorted(o.order_id for o in orders if o.order_id in busy)
        if clash:
            raise ScheduleRejected(f"already started: {', '.join(clash)}")
        self.planned.update((o.order_id, o) for o in orders)
        return len(orders)

    def list_orders(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {
                "machine": machine,
                "order_id": cmd.order_id,
                "status": "running",
                "product": cmd.product,
                "quantity": cmd.quantity,
            }
            for machine, cmd in sorted(self.active.items())
        ]
        out += [
            {
                "machine": p.machine,
                "order_id": p.order_id,
                "status": "planned",
                "product": p.product,
                "quantity": p.quantity,
            }
            for p in self.planned.values()
        ]
        return out


def machines() -> list[MachineConfig]:
    return [
        MachineConfig(
            id=machine, area=area, line=line, connector=SyntheticConnector(type="synthetic")
        )
        for area, line, machine in MACHINES
    ]


def settings_for(
    broker: Broker | None = None,
    prefix: str = "mes/v1",
    *,
    version: str = "5",
    max_age_s: float = 60.0,
    **sections: Any,
) -> Settings:
    mqtt_cfg = MqttSection(
        host=broker.host if broker else "127.0.0.1",
        port=broker.port if broker else 1883,
        prefix=prefix,
        version=version,  # type: ignore[arg-type]
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )
    return Settings(
        gateway=GatewaySection(id="gw-t", site=SITE),
        mqtt=mqtt_cfg,
        orders=OrdersSection(command_max_age_s=max_age_s),
        machines=machines(),
        **sections,
    )


@dataclass(frozen=True)
class Received:
    topic: str
    body: dict[str, Any]
    correlation_data: bytes | None
    content_type: str | None
    user: tuple[tuple[str, str], ...]
    expiry: int | None


class Requester:
    """A plain paho client, independent of the code under test: sends commands, keeps replies."""

    def __init__(self, broker: Broker, filters: Sequence[str], *, version: str = "5") -> None:
        self.v5 = version == "5"
        self.replies: queue.Queue[Received] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"req-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        )
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        # Like a real requester should: without it each send waits on a delayed ACK (~40 ms).
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.subscribe([(f, 1) for f in filters])
        self.client.loop_start()
        assert subscribed.wait(5), "requester did not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        user = tuple(getattr(props, "UserProperty", []) or [])
        self.replies.put(
            Received(
                topic=msg.topic,
                body=json.loads(msg.payload),
                correlation_data=getattr(props, "CorrelationData", None),
                content_type=getattr(props, "ContentType", None),
                user=user,
                expiry=getattr(props, "MessageExpiryInterval", None),
            )
        )

    async def send(
        self,
        topic: str,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        retain: bool = False,
    ) -> None:
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = "application/json"
            props.MessageExpiryInterval = 30
            props.UserProperty = ("sender", "test")
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=props)
        await asyncio.to_thread(info.wait_for_publish, 5)

    async def reply(self, timeout: float = 5.0) -> Received:
        return await asyncio.to_thread(self.replies.get, timeout=timeout)

    async def no_more(self, seconds: float) -> None:
        """Fails if another reply arrives within `seconds`."""
        try:
            extra = await asyncio.to_thread(self.replies.get, timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected reply {extra}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
