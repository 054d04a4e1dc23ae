"""One OPC UA session per endpoint, shared by the machines it serves.

PLCs allow few sessions (often ten or fewer), so machines on the same endpoint with the same
security, identity and timing settings share one connection and session; each machine keeps
its own subscription (or poll loop) in it. `machines_per_session` caps how many machines
one session carries (0: all of them); beyond it another session is opened. When the
session is lost every machine on it goes down, and they come back together.

A server that refuses a session (`BadTooManySessions`, `BadMaxConnectionsReached`, or just
closing the connection as small servers do) while this gateway already holds sessions to
it gets an error that names the limit: how many sessions were open, how many the endpoint
needs, and the setting that decides it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable

from asyncua.client.client import Client
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from common.backoff import Backoff
from common.errors import GatewayError
from common.logging import get_logger
from connectors.opcua.config import OpcUaConnector
from connectors.opcua.device import (
    EmitFailed,
    OpcUaDevice,
    ServerSilent,
    SessionLost,
    _limits,
    describe,
)
from connectors.opcua.session import open_session
from connectors.sample import Emit

log = get_logger("connectors.opcua")

_REFUSALS = frozenset(
    {
        StatusCodes.BadTooManySessions,
        StatusCodes.BadMaxConnectionsReached,
        StatusCodes.BadTcpNotEnoughResources,
        StatusCodes.BadResourceUnavailable,
    }
)


class SessionRefused(GatewayError):
    """The server would not give this gateway another session; the message names the limit."""


def session_key(cfg: OpcUaConnector) -> Hashable:
    """Machines whose connectors agree on all of this can share a session."""
    password = cfg.password.get_secret_value() if cfg.password is not None else None
    return (
        cfg.endpoint,
        cfg.security_policy,
        cfg.security_mode,
        str(cfg.certificate),
        str(cfg.private_key),
        str(cfg.trust_dir),
        cfg.application_uri,
        cfg.username,
        password,
        cfg.timeout_s,
        cfg.watchdog_s,
        cfg.reconnect_min_s,
        cfg.reconnect_max_s,
    )


class _Endpoint:
    """Every session of this gateway to one endpoint (for the limit in refusal messages)."""

    def __init__(self) -> None:
        self.sessions: list[SharedSession] = []

    def holding(self, besides: SharedSession) -> int:
        """Sessions of this gateway open (or being opened) to the endpoint, but `besides`."""
        return sum(1 for s in self.sessions if s is not besides and (s.connected or s.opening))

    @property
    def machines(self) -> int:
        return sum(len(s.members) for s in self.sessions)


_SESSIONS: dict[Hashable, list[SharedSession]] = {}
_ENDPOINTS: dict[str, _Endpoint] = {}


def session_for(device: OpcUaDevice, machines_per_session: int) -> SharedSession:
    """The session `device` joins: one with room and the same settings, else a new one."""
    key = session_key(device.cfg)
    group = _SESSIONS.setdefault(key, [])
    for session in group:
        if machines_per_session <= 0 or len(session.members) < machines_per_session:
            return session
    endpoint = _ENDPOINTS.setdefault(device.cfg.endpoint, _Endpoint())
    session = SharedSession(device.cfg, key, endpoint, machines_per_session, len(group) + 1)
    group.append(session)
    endpoint.sessions.append(session)
    return session


class SharedSession:
    """A session and the machines served in it; runs while it has members."""

    def __init__(
        self,
        cfg: OpcUaConnector,
        key: Hashable,
        endpoint: _Endpoint,
        machines_per_session: int,
        number: int,
    ) -> None:
        self.cfg = cfg
        self.key = key
        self.endpoint = endpoint
        self.cap = machines_per_session
        self.number = number
        self.members: dict[OpcUaDevice, tuple[Emit, asyncio.Future[None]]] = {}
        self.connected = False
        self.opening = False
        self.sessions_opened = 0
        self._joined = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(base_s=cfg.reconnect_min_s, cap_s=cfg.reconnect_max_s)

    def join(self, device: OpcUaDevice, emit: Emit) -> asyncio.Future[None]:
        """Serve `device` from now on; the future fails when its consumer fails."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.members[device] = (emit, done)
        self._joined.set()
        if self._task is None or self._task.done():
            name = f"opcua-session:{self.cfg.endpoint}#{self.number}"
            self._task = asyncio.create_task(self._run(), name=name)
        return done

    async def leave(self, device: OpcUaDevice) -> None:
        self.members.pop(device, None)
        if self.members:
            return
        group = _SESSIONS.get(self.key, [])
        if self in group:
            group.remove(self)
            if not group:
                del _SESSIONS[self.key]
        if self in self.endpoint.sessions:
            self.endpoint.sessions.remove(self)
            if not self.endpoint.sessions:
                _ENDPOINTS.pop(self.cfg.endpoint, None)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # The session is closed politely (bounded by timeout_s) before we go.
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the session loop ------------------------------------------------------------------

    async def _run(self) -> None:
        while self.members:
            try:
                await self._session()
            except Exception as err:  # the session's failure: every member goes down
                self.connected = False
                for device, (emit, done) in list(self.members.items()):
                    try:
                        await device.down(emit, err)
                    except Exception as failed:  # the consumer failed: that device ends
                        if not done.done():
                            done.set_exception(failed)
            self.connected = False
            await asyncio.sleep(self._backoff.next_delay())

    async def _session(self) -> None:
        cfg = self.cfg
        self.opening = True
        try:
            ctx = open_session(cfg, watchdog_intervall=max(1.0, cfg.watchdog_s / 2))
            client = await ctx.__aenter__()
        except Exception as err:
            raise self._refusal(err, self.endpoint.holding(self)) from err
        finally:
            self.opening = False
        try:
            self.connected = True
            self.sessions_opened += 1
            lost = asyncio.Event()
            reason: list[str] = []

            async def on_lost(exc: Exception) -> None:
                reason.append(describe(exc) if str(exc) else "connection lost")
                lost.set()

            client.connection_lost_callback = on_lost
            namespaces = await client.get_namespace_array()
            limits = await _limits(client)
            self._backoff.reset()
            served: set[OpcUaDevice] = set()
            async with asyncio.TaskGroup() as group:
                while True:
                    for device, (emit, done) in list(self.members.items()):
                        if device not in served:
                            served.add(device)
                            group.create_task(
                                self._serve(
                                    device, emit, done, client, namespaces, limits, lost, reason
                                ),
                                name=f"opcua:{device.machine}",
                            )
                    self._joined.clear()
                    waiters = [
                        asyncio.create_task(lost.wait(), name="opcua-session-lost"),
                        asyncio.create_task(self._joined.wait(), name="opcua-session-joined"),
                    ]
                    try:
                        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for waiter in waiters:
                            waiter.cancel()
                    if lost.is_set():
                        raise SessionLost(reason[0] if reason else "connection lost")
        finally:
            self.connected = False
            await ctx.__aexit__(None, None, None)

    async def _serve(
        self,
        device: OpcUaDevice,
        emit: Emit,
        done: asyncio.Future[None],
        client: Client,
        namespaces: list[str],
        limits: tuple[int, int],
        lost: asyncio.Event,
        reason: list[str],
    ) -> None:
        """One machine in the session: its own subscription, retried within the session."""
        while device in self.members and not lost.is_set():
            try:
                await device.serve(client, emit, namespaces, limits, lost, reason)
            except EmitFailed as err:
                if not done.done():
                    done.set_exception(err)
                return
            except ServerSilent as err:
                # Silence on one subscription: the session itself is in doubt.
                lost.set()
                await self._report(device, emit, done, err)
                return
            except Exception as err:
                if lost.is_set():
                    return  # the session's loss; reported for every machine by _run
                await self._report(device, emit, done, err)
            await asyncio.sleep(device.retry_delay())

    async def _report(
        self, device: OpcUaDevice, emit: Emit, done: asyncio.Future[None], err: BaseException
    ) -> None:
        try:
            await device.down(emit, err)
        except Exception as failed:
            if not done.done():
                done.set_exception(failed)

    # -- refusals --------------------------------------------------------------------------

    def _refusal(self, err: Exception, others_open: int) -> Exception:
        """`err`, or a SessionRefused naming the limit when the server refuses a session."""
        code = err.code if isinstance(err, UaStatusCodeError) else None
        closed = isinstance(err, ConnectionError | EOFError | asyncio.IncompleteReadError) or (
            isinstance(err, OSError) and not isinstance(err, ConnectionRefusedError)
        )
        refused = code in _REFUSALS or (closed and others_open > 0)
        if not refused:
            return err
        needed = len(self.endpoint.sessions)
        machines = self.endpoint.machines
        cap = "0 (one session for all)" if self.cap <= 0 else str(self.cap)
        return SessionRefused(
            f"server {self.cfg.endpoint} refused session {self.number} of {needed} "
            f"({describe(err)}) while this gateway held {others_open} others: it allows "
            f"{others_open} session(s) to this gateway; {machines} machines at "
            f"opcua.machines_per_session = {cap} need {needed}. Raise "
            "opcua.machines_per_session (0 = one session per endpoint) or the server's "
            "session limit"
        )
