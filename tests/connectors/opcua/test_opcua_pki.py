"""The gateway's certificate and the trust store, on disk."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from connectors.opcua import pki


def test_generated_certificate_fits_an_opc_ua_client(tmp_path: Path) -> None:
    cert_path, key_path = pki.generate(tmp_path / "pki", "urn:gw-01:mesgw", "gw-01.plant", days=30)
    cert = pki.load_certificate(cert_path)
    assert pki.application_uri(cert) == "urn:gw-01:mesgw"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw-01.plant"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (
        key_usage.digital_signature and key_usage.key_encipherment and key_usage.data_encipherment
    )
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < dt.timedelta(days=31)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len(pki.load_private_key_der(key_path)) > 1000


def test_existing_certificates_are_not_replaced_without_force(tmp_path: Path) -> None:
    cert_path, _ = pki.generate(tmp_path, "urn:a", "a")
    before = cert_path.read_bytes()
    with pytest.raises(pki.PkiError, match="exists; pass --force"):
        pki.generate(tmp_path, "urn:b", "b")
    assert cert_path.read_bytes() == before
    pki.generate(tmp_path, "urn:b", "b", force=True)
    assert pki.application_uri(pki.load_certificate(cert_path)) == "urn:b"


def test_thumbprint_is_sha1_in_colon_hex(tmp_path: Path) -> None:
    cert = pki.load_certificate(pki.generate(tmp_path, "urn:a", "a")[0])
    parts = pki.thumbprint(cert).split(":")
    assert len(parts) == 20 and all(len(p) == 2 and p == p.upper() for p in parts)


def test_trust_store_trusts_exactly_what_was_added(tmp_path: Path) -> None:
    one = pki.load_certificate(pki.generate(tmp_path / "1", "urn:one", "one", server=True)[0])
    two = pki.load_certificate(pki.generate(tmp_path / "2", "urn:two", "two", server=True)[0])
    store = pki.TrustStore(tmp_path / "trusted")
    assert store.entries() == [] and not store.is_trusted(one)
    path = store.add(one)
    assert store.add(one) == path  # idempotent
    assert store.is_trusted(one) and not store.is_trusted(two)
    with pytest.raises(pki.UntrustedServer) as err:
        store.check("opc.tcp://plc:4840", two)
    assert pki.thumbprint(two) in str(err.value)
    assert f"mesgw opcua trust opc.tcp://plc:4840 --trust-dir {store.directory}" in str(err.value)
    assert [e.thumbprint for e in store.entries()] == [pki.thumbprint(one)]


def test_an_expired_server_certificate_is_refused_even_when_trusted(tmp_path: Path) -> None:
    cert = pki.load_certificate(pki.generate(tmp_path, "urn:old", "old", days=1)[0])
    store = pki.TrustStore(tmp_path / "trusted")
    store.add(cert)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    assert store.is_trusted(cert) and not store.is_trusted(cert, now=later)


def test_chained_certificate_blob_gives_the_leaf(tmp_path: Path) -> None:
    one = pki.generate(tmp_path / "1", "urn:one", "one")[0].read_bytes()
    two = pki.generate(tmp_path / "2", "urn:two", "two")[0].read_bytes()
    assert pki.application_uri(pki.first_certificate(one + two)) == "urn:one"
    with pytest.raises(pki.PkiError):
        pki.first_certificate(b"")
