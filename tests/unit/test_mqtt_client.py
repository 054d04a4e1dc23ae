"""The MQTT connection wrapper, checked on the wire against a minimal fake broker."""

from __future__ import annotations

import asyncio
import io
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from gateway.config import MqttSection, TlsSection
from gateway.logging import configure
from gateway.mqtt.client import (
    Connected,
    Disconnected,
    MqttClient,
    SessionOptions,
    Will,
    build_tls_context,
    publish_properties,
)
from gateway.testing import Broker

CONNECT, CONNACK, PUBLISH, PUBACK, DISCONNECT = 0x10, 0x20, 0x30, 0x40, 0xE0


@dataclass
class ConnectPacket:
    """The fields of an MQTT CONNECT packet that our options decide."""

    level: int  # 5 = MQTT 5, 4 = 3.1.1
    clean: bool
    keepalive: int
    client_id: str
    properties: dict[int, object]
    will_topic: str | None = None
    will_payload: bytes | None = None
    will_qos: int = 0
    will_retain: bool = False
    will_properties: dict[int, object] = field(default_factory=dict)
    username: str | None = None
    password: bytes | None = None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("!H", data, pos)
    return data[pos + 2 : pos + 2 + length], pos + 2 + length


def _properties(data: bytes, pos: int) -> tuple[dict[int, object], int]:
    length, pos = _varint(data, pos)
    end = pos + length
    found: dict[int, object] = {}
    while pos < end:
        ident = data[pos]
        pos += 1
        value: object
        if ident == 0x11:  # session expiry interval
            (value,) = struct.unpack_from("!I", data, pos)
            pos += 4
        elif ident == 0x21:  # receive maximum
            (value,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif ident == 0x03:  # content type
            raw, pos = _string(data, pos)
            value = raw.decode()
        else:
            raise AssertionError(f"unexpected property 0x{ident:02x}")
        found[ident] = value
    return found, end


def parse_connect(body: bytes) -> ConnectPacket:
    name, pos = _string(body, 0)
    assert name == b"MQTT"
    level, flags = body[pos], body[pos + 1]
    (keepalive,) = struct.unpack_from("!H", body, pos + 2)
    pos += 4
    props: dict[int, object] = {}
    if level == 5:
        props, pos = _properties(body, pos)
    client_id, pos = _string(body, pos)
    packet = ConnectPacket(level, bool(flags & 0x02), keepalive, client_id.decode(), props)
    if flags & 0x04:
        if level == 5:
            packet.will_properties, pos = _properties(body, pos)
        topic, pos = _string(body, pos)
        packet.will_payload, pos = _string(body, pos)
        packet.will_topic = topic.decode()
        packet.will_qos = (flags >> 3) & 0x03
        packet.will_retain = bool(flags & 0x20)
    if flags & 0x80:
        user, pos = _string(body, pos)
        packet.username = user.decode()
    if flags & 0x40:
        packet.password, pos = _string(body, pos)
    return packet


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length)


class FakeBroker:
    """Accepts connections, records each CONNECT and every later packet type.

    `connack` None closes the connection right after CONNECT (a broker going away).
    """

    def __init__(self, connack: bytes | None) -> None:
        self.connack = connack
        self.connects: list[ConnectPacket] = []
        self.connect_times: list[float] = []
        self.packets: list[int] = []  # packet types after CONNECT, across connections
        self.closed = 0  # connections that ended
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            kind, body = await _read_packet(reader)
            assert kind & 0xF0 == CONNECT
            self.connects.append(parse_connect(body))
            self.connect_times.append(time.monotonic())
            if self.connack is None:
                return
            writer.write(self.connack)
            await writer.drain()
            while True:
                kind, body = await _read_packet(reader)
                self.packets.append(kind & 0xF0)
                if kind & 0xF0 == PUBLISH and kind & 0x06:  # QoS 1: acknowledge
                    (topic_len,) = struct.unpack_from("!H", body, 0)
                    mid = body[2 + topic_len : 4 + topic_len]
                    writer.write(bytes([PUBACK, 2]) + mid)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.transport.abort()


CONNACK_OK_V5 = bytes([CONNACK, 3, 0, 0, 0])
CONNACK_OK_V311 = bytes([CONNACK, 2, 0, 0])
CONNACK_NOT_AUTHORIZED_V5 = bytes([CONNACK, 3, 0, 0x87, 0])


@pytest.fixture
async def fake() -> AsyncIterator[FakeBroker]:
    broker = FakeBroker(CONNACK_OK_V5)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything logged during the test, as JSON lines."""
    out = io.StringIO()
    configure("debug", "json", stream=out)
    try:
        yield out
    finally:
        configure()


def mqtt_cfg(port: int, **kwargs: object) -> MqttSection:
    base: dict[str, object] = {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.02}
    base["reconnect_max_s"] = 0.1
    base.update(kwargs)
    return MqttSection.model_validate(base)


async def until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


async def test_mqtt5_connect_carries_session_will_and_credentials(fake: FakeBroker) -> None:
    cfg = mqtt_cfg(fake.port, username="gw", password=SecretStr("pw"), keepalive_s=12)
    will = Will("p/s/gateway/gw/status", b'{"status":"offline"}')
    session = SessionOptions(
        client_id="rec-1", clean_start=False, session_expiry_s=3600, receive_maximum=500, will=will
    )
    client = MqttClient(cfg, session)
    seen: list[Connected] = []
    client.on_connect = seen.append
    client.start()
    try:
        await until(lambda: client.connected)
    finally:
        await client.close()
    (packet,) = fake.connects
    assert packet.level == 5
    assert packet.clean is False
    assert packet.keepalive == 12
    assert packet.client_id == "rec-1"
    assert packet.properties == {0x11: 3600, 0x21: 500}
    assert (packet.username, packet.password) == ("gw", b"pw")
    assert packet.will_topic == "p/s/gateway/gw/status"
    assert packet.will_payload == b'{"status":"offline"}'
    assert (packet.will_qos, packet.will_retain) == (1, True)
    assert packet.will_properties == {0x03: "application/json"}
    assert seen == [Connected(epoch=1, session_present=False, receive_maximum=65535)]


async def test_mqtt311_persistent_session_uses_clean_session_off() -> None:
    fake = FakeBroker(CONNACK_OK_V311)
    await fake.start()
    client = MqttClient(
        mqtt_cfg(fake.port, version="3.1.1"), SessionOptions(client_id="rec", clean_start=False)
    )
    client.start()
    try:
        await until(lambda: client.connected)
        await client.close()
    finally:
        await fake.stop()
    (packet,) = fake.connects
    assert (packet.level, packet.clean, packet.properties) == (4, False, {})


async def test_close_sends_disconnect_so_no_will_but_abort_does_not(fake: FakeBroker) -> None:
    session = SessionOptions(client_id="pub", will=Will("t", b"offline"))
    clean = MqttClient(mqtt_cfg(fake.port), session)
    clean.start()
    await until(lambda: clean.connected)
    await clean.close()
    await until(lambda: fake.closed == 1)
    assert fake.packets == [DISCONNECT]

    crashing = MqttClient(mqtt_cfg(fake.port), session)
    lost: list[Disconnected] = []
    crashing.on_disconnect = lost.append
    crashing.start()
    await until(lambda: crashing.connected)
    crashing.abort()
    await crashing.wait_stopped()
    await until(lambda: fake.closed == 2)
    assert fake.packets == [DISCONNECT]  # nothing more: the broker would send the will
    assert not crashing.connected
    assert [d.epoch for d in lost] == [1]


async def test_publish_reports_the_puback_on_the_event_loop(fake: FakeBroker) -> None:
    client = MqttClient(mqtt_cfg(fake.port), SessionOptions(client_id="pub"))
    acks: list[int] = []
    client.on_publish = lambda ack: acks.append(ack.mid)
    client.start()
    try:
        await until(lambda: client.connected)
        mids = [client.publish("a/b", b"x") for _ in range(50)]
        await until(lambda: len(acks) == 50)
    finally:
        await client.close()
    assert acks == mids


async def test_broker_going_away_is_retried_with_capped_backoff(log_output: io.StringIO) -> None:
    fake = FakeBroker(connack=None)  # accepts, reads CONNECT, hangs up
    await fake.start()
    cfg = mqtt_cfg(fake.port, username="gw", password=SecretStr("s3cret-pw"))
    client = MqttClient(cfg, SessionOptions(client_id="pub"))
    client.start()
    try:
        await asyncio.sleep(1.0)
        started = time.monotonic()
        await client.close()
        assert time.monotonic() - started < 1.0
    finally:
        await fake.stop()
    attempts = len(fake.connects)
    gaps = [b - a for a, b in zip(fake.connect_times, fake.connect_times[1:], strict=False)]
    # Full jitter in [0, min(0.1, 0.02 * 2^n)]: many attempts, never a gap much over the cap.
    assert 8 <= attempts <= 200
    assert max(gaps) < 0.1 + 0.1
    assert not client.connected
    text = log_output.getvalue()
    assert text.count('"mqtt connection failed"') == 1
    assert "s3cret-pw" not in text


async def test_refused_connection_is_logged_once_and_retried(log_output: io.StringIO) -> None:
    fake = FakeBroker(CONNACK_NOT_AUTHORIZED_V5)
    await fake.start()
    client = MqttClient(mqtt_cfg(fake.port), SessionOptions(client_id="pub"))
    client.start()
    try:
        await until(lambda: len(fake.connects) >= 3)
        assert not client.connected
    finally:
        await client.close()
        await fake.stop()
    failures = [line for line in log_output.getvalue().splitlines() if "connection failed" in line]
    assert len(failures) == 1
    assert "Not authorized" in failures[0]


def test_publish_properties_are_mqtt5_only() -> None:
    v5 = publish_properties(MqttSection(), content_type="application/json", schema="mes.event/1")
    assert v5 is not None
    assert v5.ContentType == "application/json"
    assert v5.UserProperty == [("schema", "mes.event/1")]
    plain = Properties(PacketTypes.PUBLISH)
    plain.ContentType = "application/json"
    plain.UserProperty = ("schema", "mes.event/1")
    assert bytes(v5.pack()) == bytes(plain.pack())
    assert publish_properties(MqttSection(version="3.1.1"), content_type="application/json") is None


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _issue(d: Path, ca: str, name: str, *extra: str, password: str | None = None) -> None:
    key_opts = ["-passout", f"pass:{password}"] if password else ["-nodes"]
    _openssl("req", "-newkey", "rsa:2048", "-subj", f"/CN={name}", *key_opts,
             "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
    _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / f"{ca}.crt"),
             "-CAkey", str(d / f"{ca}.key"), "-CAcreateserial", "-days", "2",
             "-out", str(d / f"{name}.crt"), *extra)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two CAs; a broker certificate for 127.0.0.1 and a client certificate (key password
    'kp') from the first."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", f"/CN={ca}", "-keyout", str(d / f"{ca}.key"),
                 "-out", str(d / f"{ca}.crt"))  # fmt: skip
    (d / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _issue(d, "ca", "broker", "-extfile", str(d / "san.ext"))
    _issue(d, "ca", "gw", password="kp")
    return d


def test_tls_verifies_the_broker_and_presents_the_client_certificate(pki: Path) -> None:
    tls = TlsSection(
        ca_file=pki / "ca.crt",
        cert_file=pki / "gw.crt",
        key_file=pki / "gw.key",
        key_password=SecretStr("kp"),
    )
    ctx = build_tls_context(tls)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "ca"),),)]

    with pytest.raises(ssl.SSLError):
        build_tls_context(tls.model_copy(update={"key_password": SecretStr("wrong")}))

    insecure = build_tls_context(TlsSection(ca_file=pki / "ca.crt", insecure_skip_verify=True))
    assert insecure.verify_mode == ssl.CERT_NONE
    assert not insecure.check_hostname


@pytest.mark.integration
async def test_tls_connection_to_mosquitto_checks_the_broker_certificate(
    pki: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "tls-broker"
    workdir.mkdir()
    listener_tls = (
        f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'broker.crt'}\nkeyfile {pki / 'broker.key'}"
    )
    broker = Broker(workdir=workdir, extra_conf=listener_tls)
    broker.start()
    try:
        trusted = mqtt_cfg(broker.port, tls=TlsSection(ca_file=pki / "ca.crt"))
        client = MqttClient(trusted, SessionOptions(client_id="tls-ok"))
        acks: list[int] = []
        client.on_publish = lambda ack: acks.append(ack.mid)
        client.start()
        try:
            await until(lambda: client.connected)
            mid = client.publish("t/x", b"over tls")
            await until(lambda: acks == [mid])
        finally:
            await client.close()

        stranger = mqtt_cfg(broker.port, tls=TlsSection(ca_file=pki / "other-ca.crt"))
        refused = MqttClient(stranger, SessionOptions(client_id="tls-bad"))
        refused.start()
        try:
            await asyncio.sleep(0.5)
            assert not refused.connected
        finally:
            await refused.close()
    finally:
        broker.kill()
