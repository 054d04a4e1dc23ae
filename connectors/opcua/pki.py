"""Certificates: the gateway's own (client) certificate, and the store of trusted servers.

A server is trusted when its exact certificate is in the trust directory, or when a CA
certificate there issued it. Thumbprints are SHA-1 over the DER bytes, as OPC UA shows them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.errors import GatewayError
from connectors.opcua.config import OPCUA_PKI_DIR

CERT_NAME = "client-cert.der"
KEY_NAME = "client-key.pem"
_CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")
DEFAULT_TRUST_DIR = OPCUA_PKI_DIR / "trusted"


class PkiError(GatewayError):
    """A certificate or key is missing, unreadable or unusable."""


class UntrustedServer(GatewayError):
    """The server's certificate is not in the trust store; nothing was sent to it."""

    def __init__(self, endpoint: str, cert: x509.Certificate, trust_dir: Path) -> None:
        self.thumbprint = thumbprint(cert)
        option = "" if trust_dir == DEFAULT_TRUST_DIR else f" --trust-dir {trust_dir}"
        super().__init__(
            f"server {endpoint} presents an untrusted certificate ({subject(cert)}, "
            f"SHA-1 thumbprint {self.thumbprint}); if that is the right server, trust it with: "
            f"mesgw opcua trust {endpoint}{option}"
        )


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 over the DER encoding, colon-separated upper-case hex."""
    digest = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


def subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def application_uri(cert: x509.Certificate) -> str | None:
    """The first URI in the certificate's subjectAltName: the OPC UA application URI."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def first_certificate(der: bytes) -> x509.Certificate:
    """The leading certificate of a DER blob that may carry its chain after it."""
    if len(der) < 4 or der[0] != 0x30:
        raise PkiError("server sent no usable certificate")
    if der[1] & 0x80:
        n = der[1] & 0x7F
        length = int.from_bytes(der[2 : 2 + n], "big") + 2 + n
    else:
        length = der[1] + 2
    return x509.load_der_x509_certificate(der[:length])


def load_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PkiError(f"cannot read certificate {path}: {err.strerror}") from err
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as err:
        raise PkiError(f"{path} is not a PEM or DER certificate") from err


def load_private_key_der(path: Path) -> bytes:
    """The unencrypted private key at `path` (PEM or DER) as PKCS#8 DER."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PkiError(f"cannot read private key {path}: {err.strerror}") from err
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise PkiError(f"{path} is not an unencrypted PEM or DER private key") from err
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate(
    out: Path,
    uri: str,
    hostname: str,
    *,
    days: int = 730,
    server: bool = False,
    cert_name: str = CERT_NAME,
    key_name: str = KEY_NAME,
    force: bool = False,
) -> tuple[Path, Path]:
    """A self-signed application instance certificate (DER) and its RSA key (PEM, mode 0600)."""
    cert_path, key_path = out / cert_name, out / key_name
    if not force:
        for existing in (cert_path, key_path):
            if existing.exists():
                raise PkiError(f"{existing} exists; pass --force to replace it")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"mesgw@{hostname}"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mes-gateway"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(uri), x509.DNSName(hostname)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_bytes, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.DER), 0o644)
    return cert_path, key_path


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically, with the mode set before any byte is written."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class TrustedCertificate:
    path: Path
    cert: x509.Certificate

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.cert)


class TrustStore:
    """The directory of trusted server certificates (and CAs), read fresh at every check."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def entries(self) -> list[TrustedCertificate]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.iterdir()):
            if path.suffix.lower() in _CERT_SUFFIXES and path.is_file():
                found.append(TrustedCertificate(path, load_certificate(path)))
        return found

    def is_trusted(self, cert: x509.Certificate, now: dt.datetime | None = None) -> bool:
        now = now or dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return False
        der = cert.public_bytes(serialization.Encoding.DER)
        for entry in self.entries():
            if entry.cert.public_bytes(serialization.Encoding.DER) == der:
                return True
            if _issued_by(cert, entry.cert):
                return True
        return False

    def check(self, endpoint: str, cert: x509.Certificate) -> None:
        """Raise UntrustedServer (or PkiError for an expired certificate) unless trusted."""
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise PkiError(
                f"server {endpoint} certificate ({subject(cert)}) is valid only from "
                f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
            )
        if not self.is_trusted(cert, now):
            raise UntrustedServer(endpoint, cert, self.directory)

    def add(self, cert: x509.Certificate) -> Path:
        """Store a certificate as `<common name>-<thumbprint>.der`; idempotent."""
        self.directory.mkdir(parents=True, exist_ok=True)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common = str(names[0].value) if names else "server"
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", common).strip("_")[:40] or "server"
        path = self.directory / f"{stem}-{thumbprint(cert).replace(':', '')[:16].lower()}.der"
        _write(path, cert.public_bytes(serialization.Encoding.DER), 0o644)
        return path


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer` is a CA certificate that signed `cert` (self-signed ones excluded)."""
    if issuer.subject == cert.subject and issuer.public_key() == cert.public_key():
        return False
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
