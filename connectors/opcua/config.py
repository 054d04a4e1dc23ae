"""The OPC UA connector's configuration (`connector = { type = "opcua", … }` of a machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from common.config import Section, read_secret_file

OPCUA_PKI_DIR = Path("/var/lib/mesgw/pki")
OpcUaSecurityPolicy = Literal[
    "None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"
]


class OpcUaConnector(Section):
    """An OPC UA server. Secure by default: Basic256Sha256 with SignAndEncrypt, server
    certificates checked against `trust_dir`; `security_policy = "None"` must be written out."""

    type: Literal["opcua"]
    endpoint: str = Field(pattern=r"^opc\.tcp://[^/:\s]+(:\d{1,5})?(/\S*)?$")
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_s: float = Field(0.5, gt=0, le=3600)
    sampling_interval_s: float = Field(
        0.25, ge=0, description="default per tag; 0 = as fast as the server samples"
    )
    queue_size: int = Field(
        10, ge=1, le=100_000, description="values kept per item between publishes"
    )
    deadband: float = Field(0.0, ge=0, description="absolute deadband, default per tag")
    poll_interval_s: float = Field(1.0, gt=0, description="mode = poll; default per tag")
    security_policy: OpcUaSecurityPolicy = "Basic256Sha256"
    security_mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: Path = OPCUA_PKI_DIR / "client-cert.der"
    private_key: Path = OPCUA_PKI_DIR / "client-key.pem"
    trust_dir: Path = Field(OPCUA_PKI_DIR / "trusted", description="trusted server certificates")
    application_uri: str | None = Field(None, description="default: the certificate's URI")
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    timeout_s: float = Field(5.0, gt=0, description="per request")
    watchdog_s: float = Field(
        10.0, gt=0, description="reconnect when subscribed and nothing arrives for this long"
    )
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaConnector:
        if self.password is None and self.password_file is not None:
            object.__setattr__(self, "password", read_secret_file(self.password_file))
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        if self.username is not None and self.security_policy == "None":
            raise ValueError(
                'username/password need a security_policy other than "None" '
                "(the password could be read on the network)"
            )
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.mode == "subscribe" and self.watchdog_s < 2 * self.publishing_interval_s:
            raise ValueError("watchdog_s must be at least twice publishing_interval_s")
        return self
