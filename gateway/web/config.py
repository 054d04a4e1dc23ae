"""The review page's settings: `[web]` in the review service's configuration file.

```toml
[web]
timezone = "Europe/Berlin"        # the page's clock (default: rules.timezone, the plant's)
session_idle_s = 1800             # log out after 30 minutes without a request
session_lifetime_s = 43200        # and at the latest 12 hours after login
login_free_attempts = 5           # failed logins per user or address before a wait
trusted_proxy_header = ""         # e.g. "X-Remote-User" behind a single-sign-on proxy
trusted_proxies = ["127.0.0.1"]   # the proxy addresses whose header is believed
tls_behind_proxy = false          # the proxy terminates TLS: mark the cookie Secure anyway
tls_cert_file = ""                # serve page and API over HTTPS with this certificate
tls_key_file = ""                 # and this key (PEM); both or neither
```
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class WebSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str | None = Field(None, description="IANA time zone; default: rules.timezone")
    session_idle_s: float = Field(1800, gt=0, le=86_400)
    session_lifetime_s: float = Field(43_200, gt=0, le=7 * 86_400)
    login_free_attempts: int = Field(5, ge=1, le=100)
    login_first_lock_s: float = Field(30, gt=0)
    login_max_lock_s: float = Field(900, gt=0)
    trusted_proxy_header: str = Field(
        "", description="header naming the logged-in user, set by a trusted SSO proxy"
    )
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    tls_behind_proxy: bool = Field(False, description="TLS ends at a proxy: cookie Secure")
    tls_cert_file: Path | None = Field(None, description="PEM certificate: serve over HTTPS")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")

    @model_validator(mode="after")
    def _tls_pair(self) -> WebSection:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} does not exist or is not a file")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (TLS 1.2 or newer), or None to serve plain HTTP."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from err
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        for v in values:
            try:
                ipaddress.ip_network(v, strict=False)
            except ValueError as err:
                raise ValueError(f"{v!r} is not an IP address or network") from err
        return values

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone or "UTC")

    def with_default_zone(self, plant: str) -> WebSection:
        """These settings with the plant's time zone where none is set for the page."""
        return self if self.timezone else self.model_copy(update={"timezone": plant})

    def trusts(self, remote: str | None) -> bool:
        """Whether a request from `remote` may name its user in trusted_proxy_header."""
        if not self.trusted_proxy_header or not remote:
            return False
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(n, strict=False) for n in self.trusted_proxies)
