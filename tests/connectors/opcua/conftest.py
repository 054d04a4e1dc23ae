"""Real asyncua servers for the OPC UA connector's tests, with certificates made on the spot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509

from connectors.opcua import pki
from connectors.sample import Link, Reading, Sample
from gateway.testing import free_port

NAMESPACE = "urn:test:plant"
SERVER_URI = "urn:test:opcua-server"


@dataclass
class Pki:
    """Client and server certificates in a temporary PKI directory."""

    root: Path
    client_cert: Path
    client_key: Path
    server_cert: Path
    server_key: Path
    trust_dir: Path


@pytest.fixture(scope="session")
def opcua_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("opcua-pki")
    client_cert, client_key = pki.generate(root, "urn:test:mesgw", "localhost")
    server_cert, server_key = pki.generate(
        root, SERVER_URI, "localhost", server=True, cert_name="server.der", key_name="server.pem"
    )
    return Pki(root, client_cert, client_key, server_cert, server_key, root / "trusted")


class Users:
    """A user manager with one account, counting the attempts it saw."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password
        self.attempts = 0

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, **_: Any
    ) -> User | None:
        self.attempts += 1
        if username == self.username and password == self.password:
            return User(role=UserRole.User)
        return None


@dataclass
class PlantServer:
    """An asyncua server with a few tags under Objects/Line1, in namespace NAMESPACE."""

    port: int
    security: Sequence[ua.SecurityPolicyType] = (ua.SecurityPolicyType.NoSecurity,)
    pki: Pki | None = None
    trust_client: bool = True
    users: Users | None = None
    extra_namespaces: Sequence[str] = ()
    server: Server | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    types: dict[str, ua.VariantType] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/"

    async def start(self) -> PlantServer:
        server = Server(user_manager=self.users) if self.users else Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy(list(self.security))
        if self.users is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if self.pki is not None:
            await server.set_application_uri(SERVER_URI)
            await server.load_certificate(str(self.pki.server_cert))
            await server.load_private_key(str(self.pki.server_key))
            trusted = pki.load_certificate(self.pki.client_cert)
            trust_client = self.trust_client

            async def validate(cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
                if not trust_client or cert != trusted:
                    raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

            server.set_certificate_validator(validate)
        for uri in self.extra_namespaces:
            await server.register_namespace(uri)
        idx = await server.register_namespace(NAMESPACE)
        line = await server.nodes.objects.add_object(ua.NodeId("Line1", idx), "Line1")
        specs: dict[str, ua.Variant] = {
            "Good": ua.Variant(0, ua.VariantType.UInt32),
            "Reject": ua.Variant(0, ua.VariantType.UInt32),
            "State": ua.Variant(1, ua.VariantType.Int32),
            "Speed": ua.Variant(0.0, ua.VariantType.Double),
            "Order": ua.Variant("WO-1", ua.VariantType.String),
        }
        for name, value in specs.items():
            node_id = ua.NodeId(f"Line1.{name}", idx)
            self.nodes[name] = await line.add_variable(node_id, name, value)
            self.types[name] = value.VariantType
        await server.start()
        self.server = server
        return self

    async def write(self, name: str, value: Any, status: int | None = None) -> None:
        """Write a value of the variable's own type (and a status code, when given)."""
        dv = ua.DataValue(
            ua.Variant(value, self.types[name]),
            StatusCode=ua.StatusCode(status if status is not None else 0),
            SourceTimestamp=datetime.now(UTC),
        )
        await self.nodes[name].write_value(dv)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


@pytest.fixture
async def plant_server() -> AsyncIterator[Callable[..., Awaitable[PlantServer]]]:
    """Start servers on demand (each on its own free port unless one is given); stop them all."""
    started: list[PlantServer] = []

    async def start(**kwargs: Any) -> PlantServer:
        kwargs.setdefault("port", free_port())
        srv = await PlantServer(**kwargs).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        await srv.stop()


class Collector:
    """The connector's consumer: keeps every reading and wakes waiters."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self._changed = asyncio.Condition()

    async def __call__(self, readings: Sequence[Reading]) -> None:
        async with self._changed:
            self.readings.extend(readings)
            self._changed.notify_all()

    @property
    def samples(self) -> list[Sample]:
        return [r for r in self.readings if isinstance(r, Sample)]

    @property
    def links(self) -> list[Link]:
        return [r for r in self.readings if isinstance(r, Link)]

    def values(self, tag: str) -> list[Any]:
        return [s.value for s in self.samples if s.tag == tag and s.quality == "good"]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(check)


@contextlib.asynccontextmanager
async def _running(device: Any, collector: Collector) -> AsyncIterator[asyncio.Task[None]]:
    """Run a connector in a task for the block; cancel it after, surfacing any crash."""
    task = asyncio.create_task(device.run(collector), name="opcua-device-under-test")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def opcua_users() -> Users:
    """One account, operator / s3cret, for a server started with users=…"""
    return Users("operator", "s3cret")


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def running() -> Callable[..., contextlib.AbstractAsyncContextManager[asyncio.Task[None]]]:
    """`async with running(device, collector):` runs the connector for the block."""
    return _running
