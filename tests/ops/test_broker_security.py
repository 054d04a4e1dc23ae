"""The shipped broker security (deploy/mosquitto: listeners.conf, mesgw.acl) on a real
Mosquitto with a certificate authority made in the test: TLS only, passwords, the ACL, and
the gateway and the recorder working end to end through it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_support import Proc, fetchval, setup_db, spawn, wait_for, wait_logged
from secure_broker import Client, SecureBroker, make_pki

pytestmark = pytest.mark.integration

PREFIX = "mes/v1"  # the ACL is tested as shipped: default prefix, site plant1, gateway gw-01


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[SecureBroker]:
    broker = SecureBroker(workdir=tmp_path / "broker", pki=make_pki(tmp_path / "pki"))
    broker.workdir.mkdir()
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def connect(
    broker: SecureBroker,
    clients: list[Client],
    user: str | None,
    *,
    tls: bool = True,
    password: str | None = None,
) -> Client:
    c = Client(
        broker,
        user,
        password if password is not None else broker.passwords.get(user or ""),
        tls=tls,
    )
    clients.append(c)
    assert c.start(), f"{user} could not connect: {c.connack} {c.error}"
    return c


def test_plain_connection_is_refused_where_tls_is_required(
    secure: SecureBroker, clients: list[Client]
) -> None:
    plain = Client(secure, "mesgw-recorder", secure.passwords["mesgw-recorder"], tls=False)
    clients.append(plain)
    assert not plain.start(wait_s=3)
    assert plain.connack is None  # no MQTT conversation at all without TLS
    # The same account over TLS gets in: the refusal was the missing TLS, not the account.
    connect(secure, clients, "mesgw-recorder")


def test_wrong_password_and_anonymous_are_refused(
    secure: SecureBroker, clients: list[Client]
) -> None:
    wrong = Client(secure, "mesgw-gw-01", "not-the-password", tls=True)
    clients.append(wrong)
    assert not wrong.start()
    assert wrong.connack is not None and wrong.connack.is_failure
    assert wrong.connack.getName() in ("Bad user name or password", "Not authorized")
    anonymous = Client(secure, None, None, tls=True)
    clients.append(anonymous)
    assert not anonymous.start()
    assert anonymous.connack is not None and anonymous.connack.is_failure
    assert "mesgw-gw-01" in secure.passwords and "not-the-password" not in secure.log


def wait_until(predicate: object, within_s: float = 5.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)


def test_the_acl_confines_every_account(secure: SecureBroker, clients: list[Client]) -> None:
    recorder = connect(secure, clients, "mesgw-recorder")
    recorder.subscribe(f"{PREFIX}/#")  # asks for everything; the ACL hands out events only
    maintenance = connect(secure, clients, "mesgw-maintenance")
    maintenance.subscribe(f"{PREFIX}/#")
    gateway_reader = connect(secure, clients, "mesgw-gw-01")
    gateway_reader.subscribe(f"{PREFIX}/#")

    gw = connect(secure, clients, "mesgw-gw-01")
    machine = f"{PREFIX}/plant1/packaging/line-1/filler-1"
    allowed = [f"{machine}/count", f"{machine}/state", f"{machine}/downtime", f"{machine}/shift"]
    outside = [
        f"{PREFIX}/plant2/packaging/line-1/filler-1/count",  # another site
        "other/plant1/packaging/line-1/filler-1/count",  # another prefix
        f"{PREFIX}/plant2/gateway/gw-01/status",
    ]
    for topic in outside:
        gw.publish(topic, b"{}")
        if not gw.connected.is_set() or not gw.paho.is_connected():
            # Mosquitto 2.0.11 may drop a client whose publish the ACL denies (#2579).
            gw = connect(secure, clients, "mesgw-gw-01")
    for topic in allowed:
        gw.publish(topic, b"{}")
    erp = connect(secure, clients, "mesgw-erp")
    erp.publish(f"{machine}/cmd/order", b'{"action": "stop"}')
    erp.publish(f"{PREFIX}/plant2/packaging/line-1/filler-1/cmd/order", b'{"action": "stop"}')
    # The recorder itself may publish nothing, not even an event.
    recorder.publish(f"{machine}/count", b'{"forged": true}')

    wait_until(lambda: len(recorder.topics()) >= 4 and len(maintenance.topics()) >= 2)
    time.sleep(0.5)  # time for anything that should not arrive to arrive
    assert sorted(recorder.topics()) == sorted(allowed)
    assert all(payload == b"{}" for _, payload in recorder.messages)  # not the forged one
    assert sorted(maintenance.topics()) == sorted([f"{machine}/state", f"{machine}/downtime"])
    # The gateway reads only its own site's order commands, not even its own events.
    assert gateway_reader.topics() == [f"{machine}/cmd/order"]


async def test_gateway_and_recorder_end_to_end_over_tls(
    tmp_path: Path, secure: SecureBroker, pg_dsn: str, procs: list[Proc]
) -> None:
    await setup_db(pg_dsn)
    assert secure.pki is not None
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    for user in ("mesgw-gw-01", "mesgw-recorder"):
        (secrets / user).write_text(secure.passwords[user] + "\n")
        (secrets / user).chmod(0o600)

    def config(user: str, *, events: int = 0, metrics: int = 0) -> Path:
        path = tmp_path / f"{user}.toml"
        machine = (
            f"""
[[machines]]
id = "filler-1"
area = "packaging"
line = "line-1"
[machines.connector]
type = "synthetic"
cycle_time_s = 0.001
count_interval_s = 0.01
events = {events}
seed = 3
"""
            if events
            else ""
        )
        path.write_text(
            f"""
[gateway]
id = "gw-01"
site = "plant1"
status_interval_s = 1
[mqtt]
host = "127.0.0.1"
port = {secure.port}
username = "{user}"
password_file = "{secrets / user}"
reconnect_min_s = 0.05
reconnect_max_s = 0.5
[mqtt.tls]
ca_file = "{secure.pki.ca}"
[outbox]
path = "{tmp_path / "outbox.db"}"
synchronous = "normal"
[store]
dsn = "{pg_dsn}"
timescaledb = "off"
[recorder]
client_id = "mesgw-recorder-tls"
batch_wait_ms = 10
[api]
port = 0
[metrics]
port = {metrics}
[logging]
format = "json"
{machine}"""
        )
        return path

    rec = spawn(procs, tmp_path, "recorder", ["record", "--config", str(config("mesgw-recorder"))])
    await wait_logged(rec, "subscribed")
    gw = spawn(
        procs, tmp_path, "gateway", ["run", "--config", str(config("mesgw-gw-01", events=300))]
    )

    async def all_stored() -> bool:
        return await fetchval(pg_dsn, "select count(*) from events") == 300

    await wait_for(all_stored, 60, "300 events over TLS into PostgreSQL")
    seqs = await fetchval(pg_dsn, "select count(distinct seq) from events where gateway = 'gw-01'")
    assert seqs == 300
    assert gw.stop() == 0
    assert rec.stop() == 0
    await asyncio.sleep(0)
    for proc in (gw, rec):
        text = proc.text()
        assert "refused" not in text.lower()
        for password in secure.passwords.values():
            assert password not in text  # no credential in any log line
    assert "mesgw-gw-01" in secure.log  # the broker saw the account log in
