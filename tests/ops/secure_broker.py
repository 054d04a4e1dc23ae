"""A Mosquitto running the shipped TLS listener, password file and ACL, with a CA made here."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.testing import SHIPPED_BROKER_CONF, Broker

DEPLOY = SHIPPED_BROKER_CONF.parent
ACCOUNTS = ("mesgw-gw-01", "mesgw-recorder", "mesgw-maintenance", "mesgw-erp")


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def make_pki(directory: Path) -> Pki:
    """A CA and a broker certificate for 127.0.0.1 / localhost signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mesgw test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.crt", directory / "broker.crt", directory / "broker.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pki.key.chmod(0o600)
    return pki


def make_passwords(path: Path) -> dict[str, str]:
    """A Mosquitto password file (mosquitto_passwd) with a random password per account."""
    passwords = {user: secrets.token_urlsafe(18) for user in ACCOUNTS}
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    path.touch(mode=0o600)
    for user, password in passwords.items():
        subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)
    return passwords


@dataclass
class SecureBroker(Broker):
    """The shipped mesgw.conf + listeners.conf + mesgw.acl, with test paths and port."""

    pki: Pki | None = None
    passwords: dict[str, str] = field(default_factory=dict)

    def _write_conf(self) -> None:
        assert self.pki is not None
        passwd = self.workdir / "mesgw.passwd"
        if not self.passwords:
            self.passwords = make_passwords(passwd)
        acl = self.workdir / "mesgw.acl"
        shutil.copy(DEPLOY / "mesgw.acl", acl)
        listeners = (DEPLOY / "listeners.conf").read_text()
        replacements = {
            "listener 8883": f"listener {self.port} {self.host}",
            "/etc/mosquitto/mesgw.passwd": str(passwd),
            "/etc/mosquitto/mesgw.acl": str(acl),
            "/etc/mosquitto/ca_certificates/mesgw-ca.crt": str(self.pki.ca),
            "/etc/mosquitto/certs/broker.crt": str(self.pki.cert),
            "/etc/mosquitto/certs/broker.key": str(self.pki.key),
        }
        for old, new in replacements.items():
            assert old in listeners, f"listeners.conf no longer has {old!r}"
            listeners = listeners.replace(old, new)
        lines = [SHIPPED_BROKER_CONF.read_text(), listeners]
        lines += [
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.workdir}/mosquitto.log",
            "user root" if os.geteuid() == 0 else "",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")


class Client:
    """A paho MQTT 5 client that records what it receives and how its connect went."""

    def __init__(self, broker: SecureBroker, user: str | None, password: str | None, *, tls: bool):
        self.broker = broker
        self.paho = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"t-{user}-{secrets.token_hex(3)}",
            protocol=mqtt.MQTTv5,
        )
        if user is not None:
            self.paho.username_pw_set(user, password)
        if tls:
            assert broker.pki is not None
            self.paho.tls_set(ca_certs=str(broker.pki.ca))
        self.connack: mqtt.ReasonCode | None = None
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = lambda *a: self.subscribed.set()
        self.error: BaseException | None = None

    def _on_connect(
        self, client: object, userdata: object, flags: object, rc: object, props: object = None
    ) -> None:
        assert isinstance(rc, mqtt.ReasonCode)
        self.connack = rc
        if not rc.is_failure:
            self.connected.set()
        self.answered.set()

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload))

    def start(self, wait_s: float = 5.0) -> bool:
        """Connect; True once the broker accepted us, False when refused or silent."""
        try:
            self.paho.connect(self.broker.host, self.broker.port, keepalive=10)
        except OSError as err:  # the TLS handshake failed, or the connection was reset
            self.error = err
            return False
        self.paho.loop_start()
        self.answered.wait(wait_s)
        return self.connected.is_set()

    def subscribe(self, *filters: str) -> None:
        self.subscribed.clear()
        self.paho.subscribe([(f, 1) for f in filters])
        assert self.subscribed.wait(5)

    def publish(self, topic: str, payload: bytes) -> None:
        self.paho.publish(topic, payload, qos=1).wait_for_publish(5)

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.messages]

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()
