"""One MQTT connection: a paho client on its own network thread, bridged into asyncio.

paho's network I/O blocks, so it runs in a dedicated thread; everything it reports
(connected, lost, PUBACK, message) is queued in arrival order and handed to the owner's
hooks on the event loop. The thread drives paho's `loop_read`/`loop_write`/`loop_misc`
itself rather than `loop()`, whose wake-up write per queued packet (every PUBACK we send,
every publish) cost more than the rest of the packet; here one wake-up covers a burst.

Reconnects use `gateway.backoff.Backoff` (full jitter), not paho's fixed doubling. Messages
that are not acknowledged when a connection ends are forgotten: the owner re-publishes them
from its own durable state in its `on_connect` hook, so paho never resends a stale copy
beside the owner's fresh one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from paho.mqtt.client import (
    MQTT_CLEAN_START_FIRST_ONLY,
    Client,
    ConnectFlags,
    DisconnectFlags,
    MQTTMessage,
    MQTTMessageInfo,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.backoff import Backoff
from gateway.config import MqttSection, TlsSection
from gateway.errors import GatewayError
from gateway.logging import get_logger
from gateway.mqtt.properties import FastProperties
from gateway.mqtt.properties import install as install_fast_properties

JSON = "application/json"

# A connection that stayed up this long was healthy: the next loss starts the backoff
# from the beginning. A connection that keeps dropping right after CONNACK (a client-id
# takeover, a broker refusing us after connect) keeps backing off instead of hammering.
STABLE_AFTER_S = 10.0

# How often the network thread looks at its stop flags while the socket is quiet; close()
# and abort() also wake it at once, so this only bounds a stop requested mid-connect.
_LOOP_TIMEOUT_S = 1.0

# Packets read in one go before the thread writes (our acks) and checks keepalive.
_READS_PER_STEP = 256

# MQTT's largest Receive Maximum; also what a 3.1.1 broker effectively allows.
MAX_RECEIVE = 65535


class NotConnected(GatewayError):
    """A publish was attempted while the connection is down."""


class PublishRefused(GatewayError):
    """paho refused to queue a message (its packet-id space or queue is exhausted)."""


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for us when the connection ends without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True
    content_type: str | None = JSON


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How one client identifies itself and what session it asks the broker to keep."""

    client_id: str
    clean_start: bool = True
    session_expiry_s: int | None = None  # MQTT 5; None: the session ends with the connection
    receive_maximum: int | None = None  # MQTT 5; our limit on unacknowledged deliveries to us
    will: Will | None = None
    manual_ack: bool = False


@dataclass(frozen=True, slots=True)
class Connected:
    epoch: int  # 1 for the first connection, +1 on every reconnect
    session_present: bool
    receive_maximum: int  # the broker's limit on our unacknowledged QoS>0 publishes


@dataclass(frozen=True, slots=True)
class Disconnected:
    epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class PubAck:
    mid: int
    epoch: int
    reason_code: int  # MQTT 5 reason code; 0 on 3.1.1
    reason: str

    @property
    def refused(self) -> bool:
        return self.reason_code >= 0x80


@dataclass(frozen=True, slots=True)
class SubAck:
    mid: int
    epoch: int
    refused: list[str]  # the reason of every refused filter; empty when all were granted


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    epoch: int  # acks are only valid on the connection that delivered the message


_Report = Connected | Disconnected | PubAck | SubAck | Message


def build_tls_context(tls: TlsSection) -> ssl.SSLContext:
    """A client TLS context: broker certificate verified against `ca_file` (or system CAs)."""
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None
    )
    if tls.cert_file is not None and tls.key_file is not None:
        password = tls.key_password.get_secret_value() if tls.key_password else None
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file), password=password)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect_properties(cfg: MqttSection, session: SessionOptions) -> Properties | None:
    """MQTT 5 CONNECT properties; None on 3.1.1, which has none."""
    if cfg.version != "5":
        return None
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if session.session_expiry_s is not None:
        props.SessionExpiryInterval = session.session_expiry_s
    if session.receive_maximum is not None:
        props.ReceiveMaximum = session.receive_maximum
    return props


class _PackedProperties(FastProperties):
    """Properties encoded once: paho re-encodes on every publish, which dominates its cost."""

    _packed: bytes | None = None

    def pack(self) -> bytes:
        if self._packed is None:
            object.__setattr__(self, "_packed", bytes(super().pack()))  # type: ignore[no-untyped-call]
        assert self._packed is not None
        return self._packed


def publish_properties(
    cfg: MqttSection, *, content_type: str | None, **user: str
) -> Properties | None:
    """Fixed MQTT 5 PUBLISH properties (content type, user properties); None on 3.1.1."""
    if cfg.version != "5" or (content_type is None and not user):
        return None
    props = _PackedProperties(PacketTypes.PUBLISH)
    if content_type is not None:
        props.ContentType = content_type
    for key, value in user.items():
        props.UserProperty = (key, value)
    return props


class _BufferedClient(Client):
    """paho's Client reading the socket in 64 KiB chunks.

    paho reads each packet with one `recv` for the command byte, one per length byte and
    one for the body: three or more system calls per message, the recorder's largest cost
    on a backlog. Serving those small reads from a buffer makes it one call per 64 KiB.
    """

    _RECV_SIZE = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(max(bufsize, self._RECV_SIZE))
            if not data:
                return data  # the peer closed the connection
            self._rbuf, self._rpos = data, 0
        chunk = self._rbuf[self._rpos : self._rpos + bufsize]
        self._rpos += len(chunk)
        return chunk

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # bytes of a dead connection must not reach the next
        super()._sock_close()

    def buffered(self) -> bool:
        """Received bytes not yet parsed (select() cannot see them)."""
        return self._rpos < len(self._rbuf)

    # (topic bytes, payload, packet id, retain, dup) of a QoS 1 PUBLISH, when manually acked.
    on_qos1_publish: Callable[[bytes, bytes, int, bool, bool], None] | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        """QoS 1 deliveries to a manual-ack client go straight to `on_qos1_publish`.

        paho decodes every MQTT 5 property into an object, builds a message object and
        matches topic filters for each delivery; the recorder uses none of it, and on a
        backlog that work was half of its time. Anything unusual takes paho's own path.
        """
        header = self._in_packet["command"]
        handler = self.on_qos1_publish
        if handler is None or (header & 0x06) >> 1 != 1 or not self._manual_ack:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            end_topic = 2 + int.from_bytes(packet[0:2])
            topic = bytes(packet[2:end_topic])
            mid = int.from_bytes(packet[end_topic : end_topic + 2])
            body = end_topic + 2
            if self._protocol == MQTTProtocolVersion.MQTTv5:
                props_len, used = _varint(packet, body)
                body += used + props_len
        except (IndexError, ValueError):
            return super()._handle_publish()  # paho reports the malformed packet
        if not topic or mid == 0 or body > len(packet):
            return super()._handle_publish()  # e.g. a topic alias: paho's job
        handler(topic, bytes(packet[body:]), mid, bool(header & 0x01), bool(header & 0x08))
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def _varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    """An MQTT variable byte integer at `pos`: (value, bytes used)."""
    value = 0
    for used in range(4):
        byte = data[pos + used]
        value |= (byte & 0x7F) << (7 * used)
        if not byte & 0x80:
            return value, used + 1
    raise ValueError("variable byte integer longer than 4 bytes")


def build_paho(cfg: MqttSection, session: SessionOptions) -> _BufferedClient:
    """A configured, unconnected paho client."""
    v5 = cfg.version == "5"
    client = _BufferedClient(
        CallbackAPIVersion.VERSION2,
        client_id=session.client_id,
        clean_session=None if v5 else session.clean_start,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=False,
        manual_ack=session.manual_ack,
    )
    if cfg.username is not None:
        password = cfg.password.get_secret_value() if cfg.password else None
        client.username_pw_set(cfg.username, password)
    if cfg.tls is not None:
        client.tls_set_context(build_tls_context(cfg.tls))
        client.tls_insecure_set(cfg.tls.insecure_skip_verify)
    client.max_inflight_messages_set(cfg.max_inflight)
    # paho's own messages go through the stdlib logger, so structlog renders them too.
    client.enable_logger(logging.getLogger("paho.mqtt"))
    if session.will is not None:
        will_props = None
        if v5 and session.will.content_type is not None:
            will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
            will_props.ContentType = session.will.content_type
        client.will_set(
            session.will.topic,
            session.will.payload,
            qos=session.will.qos,
            retain=session.will.retain,
            properties=will_props,
        )
    client.connect_async(
        cfg.host,
        cfg.port,
        keepalive=cfg.keepalive_s,
        # 3.1.1 takes clean_session in the constructor; "first only" is paho's neutral value.
        clean_start=session.clean_start if v5 else MQTT_CLEAN_START_FIRST_ONLY,
        properties=connect_properties(cfg, session),
    )
    return client


class MqttClient:
    """An MQTT connection kept up by a network thread; hooks run on the asyncio loop."""

    def __init__(self, cfg: MqttSection, session: SessionOptions, *, name: str = "mqtt") -> None:
        install_fast_properties()
        self._cfg = cfg
        self._session = session
        self._name = name
        self._paho = build_paho(cfg, session)
        # paho writes from the calling thread when it thinks nobody else drives the socket;
        # registering a (no-op) write watcher makes it leave all socket I/O to our thread.
        self._paho.on_socket_register_write = _ignore_socket
        self._paho.on_socket_unregister_write = _ignore_socket
        self._paho.on_connect = self._net_connect
        self._paho.on_disconnect = self._net_disconnect
        self._paho.on_publish = self._net_publish
        self._paho.on_subscribe = self._net_subscribe
        self._paho.on_message = self._net_message
        if session.manual_ack:
            self._paho.on_qos1_publish = self._net_qos1_publish
        self._log = get_logger("gateway.mqtt").bind(
            client=name, client_id=session.client_id, broker=f"{cfg.host}:{cfg.port}"
        )

        self.on_connect: Callable[[Connected], None] | None = None
        self.on_disconnect: Callable[[Disconnected], None] | None = None
        self.on_publish: Callable[[PubAck], None] | None = None
        self.on_subscribe: Callable[[SubAck], None] | None = None
        self.on_message: Callable[[Message], None] | None = None

        # Network-thread state.
        self._net_epoch = 0
        self._net_up = False
        self._net_up_since = 0.0
        self._announced_down = False
        self._closing = threading.Event()
        self._aborting = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # Wakes the network thread's select() when the loop side queued packets; one byte
        # per burst: the flag is cleared by the thread just before it looks for work.
        self._poke_r: socket.socket | None = None
        self._poke_w: socket.socket | None = None
        self._poke_pending = False
        self._read_paused = False  # set on the event loop, read by the network thread

        # Loop-side state.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: collections.deque[_Report] = collections.deque()
        self._reports_lock = threading.Lock()
        self._drain_scheduled = False
        self._connected = asyncio.Event()
        self._epoch = 0
        self._receive_maximum = MAX_RECEIVE
        self._stopped = asyncio.Event()

    # -- asyncio side -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def epoch(self) -> int:
        """The number of the connection the loop side last heard about."""
        return self._epoch

    @property
    def receive_maximum(self) -> int:
        """How many unacknowledged QoS>0 publishes the broker accepts from us."""
        return self._receive_maximum

    @property
    def protocol(self) -> str:
        return self._cfg.version

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopped.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background; call from the event loop."""
        if self._thread is not None:
            raise RuntimeError("MQTT client already started")
        self._loop = asyncio.get_running_loop()
        self._poke_r, self._poke_w = socket.socketpair()
        self._poke_r.setblocking(False)
        self._poke_w.setblocking(False)
        self._thread = threading.Thread(
            target=self._net_main, name=f"mqtt-{self._name}", daemon=True
        )
        self._thread.start()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Hand one message to paho; returns its packet id (PUBACK reports the same id)."""
        # Both views: the loop side may not have heard of a loss the thread already saw, and
        # a message handed to paho between reconnect() and CONNACK would be dropped there.
        if not (self._connected.is_set() and self._net_up):
            raise NotConnected(f"not connected to {self._cfg.host}:{self._cfg.port}")
        info: MQTTMessageInfo = self._paho.publish(
            topic, payload, qos=qos, retain=retain, properties=properties
        )
        self._poke()
        # NO_CONN means the network thread lost the socket a moment ago; paho keeps the
        # message until the next CONNACK, where we drop it and the owner re-publishes.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishRefused(f"paho refused to publish on {topic}: rc={info.rc}")
        return info.mid

    def subscribe(self, filters: Sequence[str], *, qos: int = 1, retain_handling: int = 0) -> None:
        """Subscribe to `filters`; SUBACK arrives through `on_subscribe`."""
        if not filters:
            return
        subs: list[tuple[str, Any]]
        if self._cfg.version == "5":
            options = SubscribeOptions(qos=qos, retainHandling=retain_handling)
            subs = [(f, options) for f in filters]
        else:
            subs = [(f, qos) for f in filters]
        self._paho.subscribe(subs)
        self._poke()

    def ack(self, message: Message) -> bool:
        """PUBACK one delivered message (manual-ack clients); False if its connection ended."""
        # A packet id only means something on the connection that delivered it; after a
        # reconnect the broker redelivers the message and we ack that copy instead.
        if message.qos == 0 or message.epoch != self._net_epoch or not self._net_up:
            return False
        rc = self._paho.ack(message.mid, message.qos)
        self._poke()
        return rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    async def close(self, grace_s: float = 5.0) -> None:
        """Send DISCONNECT (the will is not published), stop the thread; idempotent."""
        if self._thread is None:
            return
        self._closing.set()
        self._wake.set()
        self._paho.disconnect()
        self._poke()
        try:
            async with asyncio.timeout(grace_s):
                await self._stopped.wait()
        except TimeoutError:
            self._log.warning("mqtt disconnect timed out; dropping the connection")
            self.abort()
            await self._stopped.wait()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT, as a crash would (the broker sends the will)."""
        if self._thread is None:
            return
        self._aborting.set()
        self._closing.set()
        self._wake.set()
        self._poke()
        sock = self._paho.socket()
        if isinstance(sock, socket.socket):
            # The plain-socket shutdown (even for TLS): it wakes the network thread's
            # select() without touching the SSL object that thread may be using.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    async def wait_stopped(self) -> None:
        if self._thread is not None:
            await self._stopped.wait()

    def pause_reading(self, paused: bool) -> None:
        """Stop (or resume) taking deliveries off the socket.

        Mosquitto 2.0 does not always hold to our Receive Maximum once acks flow, so a
        consumer slower than the broker uses this to bound what it holds in memory: TCP
        backpressure then keeps the rest queued at the broker.
        """
        if paused != self._read_paused:
            self._read_paused = paused
            if not paused:
                self._poke()

    def _poke(self) -> None:
        if not self._poke_pending and self._poke_w is not None:
            self._poke_pending = True
            with contextlib.suppress(OSError):  # full (a wake-up is pending) or closed
                self._poke_w.send(b"\0")

    def _dispatch(self) -> None:
        with self._reports_lock:
            reports = list(self._reports)
            self._reports.clear()
            self._drain_scheduled = False
        for report in reports:
            try:
                self._handle(report)
            except Exception:  # one faulty hook must not stop the reports behind it
                self._log.exception("mqtt hook failed", report=type(report).__name__)

    def _handle(self, report: _Report) -> None:
        if isinstance(report, Message):
            if self.on_message is not None:
                self.on_message(report)
        elif isinstance(report, PubAck):
            if self.on_publish is not None:
                self.on_publish(report)
        elif isinstance(report, Connected):
            self._epoch = report.epoch
            self._receive_maximum = report.receive_maximum
            self._connected.set()
            if self.on_connect is not None:
                self.on_connect(report)
        elif isinstance(report, Disconnected):
            self._connected.clear()
            if self.on_disconnect is not None:
                self.on_disconnect(report)
        elif self.on_subscribe is not None:
            self.on_subscribe(report)

    def _mark_stopped(self) -> None:
        self._connected.clear()
        self._stopped.set()

    # -- network thread -----------------------------------------------------------------

    def _report(self, report: _Report) -> None:
        with self._reports_lock:
            self._reports.append(report)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self._call_soon(self._dispatch)

    def _call_soon(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        # RuntimeError: the event loop is closed, nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn)

    def _net_main(self) -> None:
        backoff = Backoff(self._cfg.reconnect_min_s, self._cfg.reconnect_max_s)
        try:
            while not self._closing.is_set():
                try:
                    self._net_session()
                except Exception:
                    # A fault in paho or in our callbacks must not end the connection for
                    # good, the owner could not tell: drop the connection and reconnect.
                    self._log.exception("mqtt network thread error; reconnecting")
                    self._close_socket()
                    if self._net_up:
                        self._net_lost("internal error")
                if self._closing.is_set():
                    break
                if self._net_up_since and time.monotonic() - self._net_up_since >= STABLE_AFTER_S:
                    backoff.reset()
                self._net_up_since = 0.0
                self._wake.wait(backoff.next_delay())
                self._wake.clear()
        finally:
            self._close_socket()
            if self._net_up:
                self._net_lost("client closed")
            assert self._poke_r is not None and self._poke_w is not None
            self._poke_r.close()
            self._poke_w.close()
            self._call_soon(self._mark_stopped)

    def _net_session(self) -> None:
        """One connection attempt and, if it succeeds, its whole life."""
        try:
            self._paho.reconnect()
        except (OSError, ValueError) as err:  # ValueError: ssl.CertificateError
            self._net_failed(_describe(err))
            return
        if self._closing.is_set():
            self._paho.disconnect()
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and not self._aborting.is_set():
            rc = self._net_step(_LOOP_TIMEOUT_S)
            if self._closing.is_set() and not self._aborting.is_set() and not self._net_up:
                # Asked to stop before CONNACK: there is no session worth a DISCONNECT.
                break
        if self._net_up:
            self._close_socket()
            self._net_lost(_describe_rc(rc) if not self._closing.is_set() else "client closed")
        elif rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._net_failed(_describe_rc(rc))
        self._close_socket()

    def _net_step(self, timeout: float) -> MQTTErrorCode:
        """Wait for the socket or a poke, then read, write and keep alive (paho's `_loop`)."""
        sock = self._paho.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        poke = self._poke_r
        assert poke is not None
        self._poke_pending = False
        with contextlib.suppress(OSError):
            while poke.recv(4096):
                pass
        paused = self._read_paused
        # TLS may hold decrypted bytes that select() cannot see.
        buffered = not paused and (
            self._paho.buffered() or (isinstance(sock, ssl.SSLSocket) and sock.pending() > 0)
        )
        wlist = [sock] if self._paho.want_write() else []
        rlist = [poke] if paused else [sock, poke]
        try:
            readable, _, _ = select.select(rlist, wlist, [], 0.0 if buffered else timeout)
        except (OSError, ValueError, TypeError):  # the socket was closed under us
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if sock in readable or buffered:
            # paho's loop_read() handles one packet per call when nothing is in flight
            # outwards (a subscriber's case): read on while more is waiting, within bounds,
            # so a backlog is not taken one select() per message.
            for _ in range(_READS_PER_STEP):
                rc = self._paho.loop_read()
                if rc or self._paho.socket() is None:
                    return rc or MQTTErrorCode.MQTT_ERR_NO_CONN
                if not self._paho.buffered() and not (
                    isinstance(sock, ssl.SSLSocket) and sock.pending()
                ):
                    ready, _, _ = select.select([sock], [], [], 0.0)
                    if not ready:
                        break
        if self._paho.want_write():
            rc = self._paho.loop_write()
            if rc or self._paho.socket() is None:
                return rc or MQTTErrorCode.MQTT_ERR_NO_CONN
        return self._paho.loop_misc()

    def _close_socket(self) -> None:
        sock = self._paho.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _net_failed(self, error: str) -> None:
        if not self._announced_down and not self._closing.is_set():
            self._log.warning("mqtt connection failed", error=error)
            self._announced_down = True
        else:
            self._log.debug("mqtt connection attempt failed", error=error)

    def _net_lost(self, reason: str) -> None:
        self._net_up = False
        if self._closing.is_set() and reason == "client closed":
            self._log.info("mqtt disconnected")
        else:
            self._log.warning("mqtt connection lost", reason=reason)
        self._announced_down = True
        self._report(Disconnected(self._net_epoch, reason))

    def _net_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._net_failed(f"refused by broker: {reason_code}")
            return
        # Runs before paho's own resend pass in the same CONNACK handler: what paho still
        # holds from the previous connection is dropped, the owner re-publishes it.
        with client._out_message_mutex:
            client.drop_out_messages()
            # paho does not forget the dropped messages' in-flight slots; left alone, each
            # would shrink its window for good.
            client._inflight_messages = 0
        self._net_epoch += 1
        self._net_up = True
        self._net_up_since = time.monotonic()
        self._announced_down = False
        receive_max = MAX_RECEIVE
        if properties is not None and hasattr(properties, "ReceiveMaximum"):
            receive_max = int(properties.ReceiveMaximum)
        self._log.info(
            "mqtt connected",
            epoch=self._net_epoch,
            session_present=flags.session_present,
            protocol=self._cfg.version,
        )
        self._report(Connected(self._net_epoch, flags.session_present, receive_max))

    def _net_disconnect(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._net_up:
            reason = str(reason_code)
            if flags.is_disconnect_packet_from_server:
                reason = f"broker sent DISCONNECT: {reason}"
            elif self._aborting.is_set():
                reason = "connection aborted"
            elif self._closing.is_set():
                reason = "client closed"
            self._net_lost(reason)

    def _net_publish(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._report(PubAck(mid, self._net_epoch, int(reason_code.value), str(reason_code)))

    def _net_subscribe(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        self._report(SubAck(mid, self._net_epoch, refused))

    def _net_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        self._net_delivery(
            message._topic,
            bytes(message.payload),
            message.qos,
            message.mid,
            bool(message.retain),
            bool(message.dup),
        )

    def _net_qos1_publish(
        self, topic: bytes, payload: bytes, mid: int, retain: bool, dup: bool
    ) -> None:
        self._net_delivery(topic, payload, 1, mid, retain, dup)

    def _net_delivery(
        self, topic: bytes, payload: bytes, qos: int, mid: int, retain: bool, dup: bool
    ) -> None:
        try:
            name = topic.decode()
        except UnicodeDecodeError:  # brokers reject such topics; keep the bytes visible
            name = repr(topic)
        self._report(
            Message(
                topic=name,
                payload=payload,
                qos=qos,
                retain=retain,
                dup=dup,
                mid=mid,
                epoch=self._net_epoch,
            )
        )


def _ignore_socket(client: Client, userdata: Any, sock: Any) -> None:
    return None


def _describe(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text}" if type(err).__name__ not in text else text


def _describe_rc(rc: MQTTErrorCode) -> str:
    try:
        return MQTTErrorCode(rc).name.removeprefix("MQTT_ERR_").lower().replace("_", " ")
    except ValueError:
        return f"error {int(rc)}"
