"""Opening an OPC UA session the way the configuration asks: security policy, trust, user.

The server's certificate is taken from its endpoint list (over an unsecured discovery
channel, as the standard intends) and checked against the trust store before the secure
channel is opened, so an unknown server never receives our session request or password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies, uacrypto
from asyncua.ua.uaerrors import UaError
from cryptography.hazmat.primitives import serialization

from common.errors import GatewayError
from connectors.opcua import pki
from connectors.opcua.config import OpcUaConnector

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
PRODUCT_URI = "urn:mes-gateway:mesgw"


class _ExpectedOnLoss(logging.Filter):
    """asyncua logs a traceback and warnings when a connection drops under it; the device
    reports that loss itself, once, so these add only noise to the journal."""

    NOISE = (
        "Publish iteration crashed",
        "close_session was called but connection is closed",
        "close_session but connection wasn't established",
        "close_secure_channel was called but connection is closed",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.NOISE):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return exc is not None and not isinstance(exc, OSError)


for _name in ("asyncua.client.ua_session.UaSession", "asyncua.client.ua_client.UaClient"):
    logging.getLogger(_name).addFilter(_ExpectedOnLoss())


class EndpointMismatch(GatewayError):
    """The server offers no endpoint with the configured security policy and mode."""


def _client_identity(cfg: OpcUaConnector) -> tuple[bytes, str]:
    """The client certificate (DER) and the application URI it was issued for."""
    for path, what in ((cfg.certificate, "certificate"), (cfg.private_key, "private key")):
        if not path.is_file():
            raise pki.PkiError(
                f"OPC UA client {what} {path} not found; create one with "
                f"`mesgw opcua gen-cert --out {path.parent}` and let the server trust the "
                f'certificate, or set security_policy = "None" for a server without security'
            )
    cert = pki.load_certificate(cfg.certificate)
    uri = pki.application_uri(cert)
    if uri is None:
        raise pki.PkiError(f"{cfg.certificate} has no application URI (subjectAltName URI)")
    if cfg.application_uri is not None and cfg.application_uri != uri:
        raise pki.PkiError(
            f"application_uri {cfg.application_uri!r} differs from the URI in "
            f"{cfg.certificate} ({uri!r}); servers reject such a pair"
        )
    return cert.public_bytes(serialization.Encoding.DER), uri


def _endpoint_certificate(cfg: OpcUaConnector, endpoints: list[ua.EndpointDescription]) -> bytes:
    policy_uri = POLICIES[cfg.security_policy].URI
    mode = MODES[cfg.security_mode]
    for ep in endpoints:
        if ep.SecurityPolicyUri == policy_uri and ep.SecurityMode == mode:
            if not ep.ServerCertificate:
                raise pki.PkiError(
                    f"server {cfg.endpoint} offers {policy_uri} without a certificate"
                )
            return bytes(ep.ServerCertificate)
    offered = sorted(
        {f"{ep.SecurityPolicyUri.rsplit('#', 1)[-1]}/{ep.SecurityMode.name}" for ep in endpoints}
    )
    raise EndpointMismatch(
        f"server {cfg.endpoint} offers no {cfg.security_policy}/{cfg.security_mode} endpoint; "
        f"it offers: {', '.join(offered) or 'nothing'}"
    )


async def server_certificate_der(cfg: OpcUaConnector) -> bytes:
    """The certificate a server presents for the configured policy (or any policy for None)."""
    probe = Client(cfg.endpoint, timeout=cfg.timeout_s)
    endpoints = await probe.connect_and_get_server_endpoints()
    if cfg.security_policy != "None":
        return _endpoint_certificate(cfg, endpoints)
    for ep in endpoints:
        if ep.ServerCertificate:
            return bytes(ep.ServerCertificate)
    raise pki.PkiError(f"server {cfg.endpoint} presents no certificate")


async def _configure(cfg: OpcUaConnector, client: Client) -> None:
    client.name = client.description = f"mesgw@{socket.gethostname()}"
    client.product_uri = PRODUCT_URI
    # Short enough that a vanished gateway's session is freed soon; the supervisor's
    # keep-alive reads keep a live one open.
    client.session_timeout = int(max(60.0, 10 * cfg.watchdog_s) * 1000)
    if cfg.username is not None:
        client.set_user(cfg.username)
    if cfg.password is not None:
        client.set_password(cfg.password.get_secret_value())
    if cfg.security_policy == "None":
        return
    cert_der, uri = _client_identity(cfg)
    client.application_uri = uri
    server_der = await server_certificate_der(cfg)
    pki.TrustStore(cfg.trust_dir).check(cfg.endpoint, pki.first_certificate(server_der))
    await client.set_security(
        POLICIES[cfg.security_policy],
        cert_der,
        uacrypto.CertProperties(pki.load_private_key_der(cfg.private_key), extension="der"),
        server_certificate=pki.first_certificate(server_der).public_bytes(
            serialization.Encoding.DER
        ),
        mode=MODES[cfg.security_mode],
    )


@contextlib.asynccontextmanager
async def open_session(cfg: OpcUaConnector, **client_args: Any) -> AsyncIterator[Client]:
    """A connected, activated client; closed (within timeout_s) on the way out."""
    client = Client(cfg.endpoint, timeout=cfg.timeout_s, **client_args)
    await _configure(cfg, client)
    await client.connect()
    try:
        yield client
    finally:
        await close(client, cfg.timeout_s)


async def close(client: Client, timeout_s: float) -> None:
    """Close the session politely if the server still answers, else just drop the socket."""
    try:
        await asyncio.wait_for(client.disconnect(), timeout_s)
    except (OSError, TimeoutError, UaError):
        client.disconnect_socket()
