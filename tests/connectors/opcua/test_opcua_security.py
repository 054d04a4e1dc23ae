"""Secure channels with real certificates, the trust store, and user names with passwords."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from connectors.opcua import pki
from connectors.opcua.device import OpcUaDevice
from gateway.config import OpcUaConnector, TagConfig

NAMESPACE = "urn:test:plant"
TAGS = {"good": TagConfig(role="good_count", address=f"nsu={NAMESPACE};s=Line1.Good", width=32)}
P = ua.SecurityPolicyType


def secure(endpoint: str, keys: Any, trust_dir: Path, **overrides: Any) -> OpcUaConnector:
    settings: dict[str, Any] = {
        "type": "opcua",
        "endpoint": endpoint,
        "certificate": keys.client_cert,
        "private_key": keys.client_key,
        "trust_dir": trust_dir,
        "publishing_interval_s": 0.05,
        "sampling_interval_s": 0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "timeout_s": 3.0,
    }
    settings.update(overrides)
    return OpcUaConnector(**settings)


@pytest.fixture
def trusting(opcua_pki, tmp_path) -> Path:
    """A trust directory holding the test server's certificate."""
    trust_dir = tmp_path / "trusted"
    pki.TrustStore(trust_dir).add(pki.load_certificate(opcua_pki.server_cert))
    return trust_dir


async def test_basic256sha256_sign_and_encrypt_with_certificates_both_ways(
    plant_server, opcua_pki, trusting, collector, running
):
    server = await plant_server(security=[P.Basic256Sha256_SignAndEncrypt], pki=opcua_pki)
    cfg = secure(server.endpoint, opcua_pki, trusting)
    assert (cfg.security_policy, cfg.security_mode) == ("Basic256Sha256", "SignAndEncrypt")
    async with running(OpcUaDevice("m", cfg, TAGS), collector):
        await collector.wait_for(lambda: collector.values("good") == [0])
        await server.write("Good", 11)
        await collector.wait_for(lambda: collector.values("good") == [0, 11])
    assert [link.up for link in collector.links] == [True]


@pytest.mark.parametrize(
    ("server_policy", "policy", "mode"),
    [
        (P.Aes128Sha256RsaOaep_Sign, "Aes128_Sha256_RsaOaep", "Sign"),
        (P.Aes128Sha256RsaOaep_SignAndEncrypt, "Aes128_Sha256_RsaOaep", "SignAndEncrypt"),
        (P.Aes256Sha256RsaPss_Sign, "Aes256_Sha256_RsaPss", "Sign"),
        (P.Aes256Sha256RsaPss_SignAndEncrypt, "Aes256_Sha256_RsaPss", "SignAndEncrypt"),
        (P.Basic256Sha256_Sign, "Basic256Sha256", "Sign"),
    ],
)
async def test_other_policies_and_modes(
    plant_server, opcua_pki, trusting, collector, running, server_policy, policy, mode
):
    server = await plant_server(security=[server_policy], pki=opcua_pki)
    cfg = secure(server.endpoint, opcua_pki, trusting, security_policy=policy, security_mode=mode)
    async with running(OpcUaDevice("m", cfg, TAGS), collector):
        await collector.wait_for(lambda: collector.values("good") == [0])


async def test_an_untrusted_server_is_refused_before_it_sees_a_session(
    plant_server, opcua_pki, opcua_users, tmp_path, collector, running
):
    users = opcua_users
    server = await plant_server(
        security=[P.Basic256Sha256_SignAndEncrypt], pki=opcua_pki, users=users
    )
    empty = tmp_path / "trusted"
    cfg = secure(server.endpoint, opcua_pki, empty, username="operator", password="s3cret")
    async with running(OpcUaDevice("m", cfg, TAGS), collector) as task:
        await collector.wait_for(lambda: len(collector.links) == 1)
        assert not task.done()
    [down] = collector.links
    thumb = pki.thumbprint(pki.load_certificate(opcua_pki.server_cert))
    assert down.up is False
    assert down.error is not None
    assert "untrusted certificate" in down.error and thumb in down.error
    assert f"mesgw opcua trust {server.endpoint} --trust-dir {empty}" in down.error
    assert users.attempts == 0  # no session was activated: the password never left
    assert not collector.samples


async def test_a_certificate_issued_by_a_trusted_ca_is_trusted(tmp_path):
    ca_dir, leaf_dir = tmp_path / "ca", tmp_path / "leaf"
    ca_cert, ca_key = _ca(ca_dir)
    leaf = _issued(leaf_dir, ca_cert, ca_key)
    store = pki.TrustStore(tmp_path / "trusted")
    assert not store.is_trusted(leaf)
    store.directory.mkdir()
    shutil.copy(ca_dir / "ca.der", store.directory / "plant-ca.der")
    assert store.is_trusted(leaf)
    assert not store.is_trusted(_issued(leaf_dir, *_ca(tmp_path / "other-ca")))


async def test_a_server_that_does_not_trust_us_gives_a_clear_error(
    plant_server, opcua_pki, trusting, collector, running
):
    server = await plant_server(
        security=[P.Basic256Sha256_SignAndEncrypt], pki=opcua_pki, trust_client=False
    )
    async with running(
        OpcUaDevice("m", secure(server.endpoint, opcua_pki, trusting), TAGS), collector
    ):
        await collector.wait_for(lambda: len(collector.links) == 1)
    assert "BadCertificateUntrusted" in (collector.links[0].error or "")


async def test_a_missing_client_certificate_names_the_command_that_makes_one(
    plant_server, opcua_pki, tmp_path, trusting, collector, running
):
    server = await plant_server(security=[P.Basic256Sha256_SignAndEncrypt], pki=opcua_pki)
    cfg = secure(server.endpoint, opcua_pki, trusting, certificate=tmp_path / "nope.der")
    async with running(OpcUaDevice("m", cfg, TAGS), collector):
        await collector.wait_for(lambda: len(collector.links) == 1)
    error = collector.links[0].error or ""
    assert str(tmp_path / "nope.der") in error and "mesgw opcua gen-cert" in error


async def test_a_server_without_the_configured_policy_lists_what_it_offers(
    plant_server, opcua_pki, trusting, collector, running
):
    server = await plant_server(security=[P.Basic256Sha256_Sign], pki=opcua_pki)
    async with running(
        OpcUaDevice("m", secure(server.endpoint, opcua_pki, trusting), TAGS), collector
    ):
        await collector.wait_for(lambda: len(collector.links) == 1)
    error = collector.links[0].error or ""
    assert "no Basic256Sha256/SignAndEncrypt endpoint" in error and "Basic256Sha256/Sign" in error


async def test_username_and_password(
    plant_server, opcua_pki, opcua_users, trusting, collector, running
):
    users = opcua_users
    server = await plant_server(
        security=[P.Basic256Sha256_SignAndEncrypt], pki=opcua_pki, users=users
    )
    cfg = secure(server.endpoint, opcua_pki, trusting, username="operator", password="s3cret")
    async with running(OpcUaDevice("m", cfg, TAGS), collector):
        await collector.wait_for(lambda: collector.values("good") == [0])
    assert users.attempts == 1


async def test_a_wrong_password_is_reported_once_and_retried_with_backoff(
    plant_server, opcua_pki, opcua_users, trusting, collector, running, tmp_path
):
    users = opcua_users
    server = await plant_server(
        security=[P.Basic256Sha256_SignAndEncrypt], pki=opcua_pki, users=users
    )
    secret = tmp_path / "opcua.pass"
    secret.write_text("wrong\n")
    cfg = secure(server.endpoint, opcua_pki, trusting, username="operator", password_file=secret)
    async with running(OpcUaDevice("m", cfg, TAGS), collector) as task:
        await collector.wait_for(lambda: len(collector.links) == 1)
        async with asyncio.timeout(10):
            while users.attempts < 3:  # noqa: ASYNC110 - a sync callback of the server counts
                await asyncio.sleep(0.05)
        assert not task.done()
    [down] = collector.links
    assert down.up is False
    assert down.error is not None and "BadUserAccessDenied" in down.error
    assert "wrong" not in down.error


def _ca(out: Path) -> tuple[Any, Any]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Plant CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    out.mkdir()
    (out / "ca.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return cert, key


def _issued(out: Path, ca_cert: Any, ca_key: Any) -> Any:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc-7")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
