"""The review service as `mesgw review` runs it: page and API on one port, over TLS; the
trusted-proxy mode; `mesgw user passwd`."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
import ssl
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr
from web_support import PASSWORDS, serve

from gateway.cli import main
from gateway.config import MetricsSection, ReviewSection, Settings, StoreSection
from gateway.review.service import running
from gateway.review.users import create_token
from gateway.web.config import WebSection

pytestmark = pytest.mark.integration


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "review.crt", directory / "review.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def login(session: aiohttp.ClientSession, base: str, name: str) -> aiohttp.ClientResponse:
    """The login form as a browser fills it: its token, and the cookie that pairs with it."""
    async with session.get(base + "/login") as r:
        token = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        cookie = r.cookies["mesgw_login"].value
    assert token is not None and token[1] == cookie
    form = {"csrf": token[1], "next": "/", "username": name, "password": PASSWORDS[name]}
    return await session.post(
        base + "/login",
        data=form,
        allow_redirects=False,
        headers={"Cookie": f"mesgw_login={cookie}"},
    )


async def test_page_and_api_on_one_port_over_tls(recorded: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = Settings(
        store=StoreSection(dsn=SecretStr(recorded), pool_size=2),
        review=ReviewSection(port=0),
        web=WebSection(tls_cert_file=cert, tls_key_file=key),
        metrics=MetricsSection(port=0),
    )
    client_tls = ssl.create_default_context(cafile=str(cert))
    async with running(settings) as listening:
        port = listening.port
        base = f"https://localhost:{port}"
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(
            cookie_jar=jar, connector=aiohttp.TCPConnector(ssl=client_tls)
        ) as s:
            response = await login(s, base, "clara")
            assert response.status == 303
            cookie = response.headers["Set-Cookie"]
            assert "mesgw_session=" in cookie
            assert all(flag in cookie for flag in ("HttpOnly", "Secure", "SameSite=Strict"))
            async with s.get(base + "/queue") as r:
                assert r.status == 200 and "Review queue" in await r.text()
                assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            import asyncpg

            conn = await asyncpg.connect(recorded)
            try:
                token = await create_token(conn, "vic")
            finally:
                await conn.close()
            async with s.get(
                base + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 200 and (await r.json())["user"] == "vic"
            async with s.get(base + "/api/v1/nothing-here") as r:
                assert r.status in (401, 404)
        # Metrics and health on their own loopback port, counting the requests above.
        assert listening.metrics is not None and listening.metrics.port
        async with aiohttp.ClientSession() as s:
            murl = listening.metrics.url
            async with s.get(murl + "/readyz") as r:
                assert r.status == 200
                assert (await r.json())["checks"]["database"]["ok"] is True
            async with s.get(murl + "/metrics") as r:
                text = await r.text()
            assert 'mesgw_build_info{component="review"' in text
            assert 'mesgw_review_requests_total{kind="page",status="2xx"}' in text
            assert 'mesgw_review_requests_total{kind="api",status="2xx"} 1.0' in text
            assert "mesgw_review_request_seconds_bucket" in text
            assert "mesgw_review_db_pool_size" in text
        # Plain HTTP to the TLS port gets no page.
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ClientError):
                async with s.get(f"http://localhost:{port}/login") as r:
                    await r.read()


async def test_a_trusted_proxy_names_the_user_and_nobody_else_can(recorded: str) -> None:
    runner, site, pool = await serve(recorded, trusted_proxy_header="X-Remote-User")
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(site.url + "/queue", headers={"X-Remote-User": "vic"}) as r:
                assert r.status == 200
                assert 'vic <span class="role">viewer</span>' in await r.text()
            async with s.get(
                site.url + "/queue", headers={"X-Remote-User": "mallory"}, allow_redirects=False
            ) as r:
                assert r.status == 303  # unknown to the store: log in
            # The proxy's CSRF token is the user's: a forged POST without it is refused.
            async with s.post(
                site.url + "/orders/WO-1001/adjust",
                headers={"X-Remote-User": "clara"},
                data={"machine": "filler-1", "figure": "scrap", "value": "5", "reason": "x"},
            ) as r:
                assert r.status == 403
    finally:
        await runner.cleanup()
        await pool.close()
    # From an address that is not a trusted proxy the header means nothing.
    runner, site, pool = await serve(
        recorded, trusted_proxy_header="X-Remote-User", trusted_proxies=["10.0.0.0/8"]
    )
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                site.url + "/queue", headers={"X-Remote-User": "sam"}, allow_redirects=False
            ) as r,
        ):
            assert r.status == 303
    finally:
        await runner.cleanup()
        await pool.close()


async def test_user_passwd_sets_the_login_password_and_ends_sessions(
    recorded: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = tmp_path / "review.toml"
    cfg.write_text(f'[store]\ndsn = "{recorded}"\n')
    runner, site, pool = await serve(recorded)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            assert (await login(s, site.url, "sam")).status == 303
        monkeypatch.setattr("sys.stdin", io.StringIO("a-new-long-secret\n"))
        args = ["user", "passwd", "sam", "--password-stdin", "--config", str(cfg)]
        assert await asyncio.to_thread(main, args) == 0
        assert "password of sam set; 1 open session(s) ended" in capsys.readouterr().out
        PASSWORDS_BEFORE = PASSWORDS["sam"]
        async with aiohttp.ClientSession() as s:
            assert (await login(s, site.url, "sam")).status == 401  # the old one is gone
        monkeypatch.setitem(PASSWORDS, "sam", "a-new-long-secret")
        async with aiohttp.ClientSession() as s:
            assert (await login(s, site.url, "sam")).status == 303
        assert PASSWORDS["sam"] != PASSWORDS_BEFORE
        monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
        assert await asyncio.to_thread(main, args) == 1
        assert "at least 10 characters" in capsys.readouterr().err
    finally:
        await runner.cleanup()
        await pool.close()
