"""One Modbus device: coalesced, fixed-rate polling of its typed tags, reconnecting on its own.

Each poll group (tags sharing a poll interval) runs on a fixed-rate schedule: the next
cycle is due one interval after the previous one was *due*, not after it finished; a cycle
that overruns skips the slots it missed and counts them (`late_cycles`). Every cycle's
samples go out in one `emit` call, each stamped with the time its response arrived. A TCP
device has its own connection; devices on one serial port share it (`wire.SerialLine`).

Failures, from mildest:
- an exception response marks the tags of that request bad; a merged request refused
  with "illegal address" is split (holes first, then per tag) and re-read at once, so
  only the tags the device really refuses stay bad;
- no answer, or an answer that does not match the request (unit, function, length), or an
  extra answer nobody asked for: the connection is dropped and the request retried on a
  fresh one (`retries` times), so a late answer can never be taken for a later request;
- still nothing: the rest of the cycle's tags are bad, the link is down (`Link`), and the
  device reconnects with capped exponential backoff and full jitter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pymodbus.exceptions import ConnectionException, ModbusException

from common.backoff import Backoff
from common.logging import get_logger
from connectors.modbus.address import TagSpec, tag_specs
from connectors.modbus.decode import Decoder, decoder_for
from connectors.modbus.link import (
    Client,
    exception_text,
    library_listener,
    make_client,
    register_bytes,
    where,
)
from connectors.modbus.plan import Request, plan, split
from connectors.modbus.wire import SerialLine, Wire, wire_for
from connectors.sample import Emit, Link, Reading, Sample

if TYPE_CHECKING:
    from connectors.modbus.config import ModbusConnector
    from connectors.tags import TagConfig

log = get_logger("connectors.modbus")

_EARLY_S = 0.0005  # a group due within this much is run in the same wake-up
_SPLIT_CODES = frozenset({2, 3})  # illegal data address / value: a merged read may be at fault


class LinkDown(Exception):
    """The device cannot be read now; the message says why."""


@dataclass
class Counters:
    """What the device's task has done so far (for tests, benchmarks and status)."""

    requests: int = 0  # requests sent, retries included
    responses: int = 0  # answers received, exception responses included
    exceptions: int = 0  # exception responses
    timeouts: int = 0  # requests not answered in time
    errors: int = 0  # timeouts, mismatched or stale answers, lost or refused connections
    connects: int = 0  # connections made
    reconnects: int = 0  # connections made after the first (retries and link recovery)
    cycles: int = 0  # poll cycles run
    late_cycles: int = 0  # schedule slots skipped because a cycle overran
    max_lag_s: float = 0.0  # worst delay of a cycle's start behind its schedule
    splits: int = 0  # merged requests split after the device refused them
    readings: int = 0  # samples and link changes emitted


@dataclass
class _Job:
    request: Request
    decoder: Decoder
    read: str  # the client method
    bits: bool

    @classmethod
    def of(cls, request: Request, every: Collection[str] | None = None) -> _Job:
        method = {
            "hr": "read_holding_registers",
            "ir": "read_input_registers",
            "coil": "read_coils",
            "di": "read_discrete_inputs",
        }[request.table]
        return cls(request, decoder_for(request, every), method, request.table in ("coil", "di"))


@dataclass
class _Group:
    interval: float
    planned: list[Request]
    jobs: list[_Job] = field(default_factory=list)
    due: float = 0.0


class ModbusDevice:
    """Polls one device's tags; `run(emit)` until cancelled (the `Connector` protocol)."""

    def __init__(
        self,
        machine_id: str,
        connector: ModbusConnector,
        tags: Mapping[str, TagConfig],
        *,
        client_factory: Callable[..., Client] = make_client,
        every_poll: Collection[str] | None = None,
    ) -> None:
        self.machine = machine_id
        # Tags reported at every poll; the others only when they change (None: all always).
        self._every = None if every_poll is None else frozenset(every_poll)
        self.connector = connector
        self.counters = Counters()
        specs, problems = tag_specs(
            tags,
            address_base=connector.address_base,
            byte_order=connector.byte_order,
            max_registers=connector.max_registers,
            max_bits=connector.max_bits,
        )
        if problems:
            raise ValueError(
                "; ".join(f"tags.{name}.{key}: {message}" for name, key, message in problems)
            )
        by_interval: dict[float, list[TagSpec]] = {}
        for spec in specs:
            interval = tags[spec.name].poll_interval_s or connector.poll_interval_s
            by_interval.setdefault(interval, []).append(spec)
        self._groups = [
            _Group(
                interval,
                plan(
                    group,
                    max_gap=connector.max_gap,
                    max_registers=connector.max_registers,
                    max_bits=connector.max_bits,
                    one_request_per_tag=connector.one_request_per_tag,
                ),
            )
            for interval, group in sorted(by_interval.items())
        ]
        self._where = where(connector)
        self._unit = connector.unit
        self._unit_at = 6 if connector.transport == "tcp" else 0  # unit id's byte in a frame
        self._client_factory = client_factory
        self._wire: Wire = Wire(connector, self._trace_packet, client_factory)  # set by run()
        self._backoff = Backoff(base_s=connector.reconnect_min_s, cap_s=connector.reconnect_max_s)
        self._link: bool | None = None
        self._down_since = 0.0
        self._pending: list[Reading] = []
        self._tid = b""  # transaction id of the request in flight (MBAP)
        self._stale = False  # bytes arrived that answer no request in flight
        self._mismatch: str | None = None
        self._library_note: str | None = None

    @property
    def requests_per_cycle(self) -> dict[float, int]:
        """Poll interval → requests one cycle makes, as planned."""
        return {g.interval: len(g.planned) for g in self._groups}

    @property
    def link_up(self) -> bool | None:
        return self._link

    async def run(self, emit: Emit) -> None:
        library_listener.set(self)  # this task's context only
        try:
            self._wire = wire_for(self, self.connector, self._trace_packet, self._client_factory)
        except ValueError as err:
            # Two machines disagree about one serial line: this one stays without data.
            log.error("modbus device not started", where=self._where, error=str(err))
            self._set_link(False, str(err))
            await self._flush(emit)
            await asyncio.Event().wait()
        if not self._groups:
            log.warning("modbus device has no tags to poll", where=self._where)
            await asyncio.Event().wait()
        try:
            while True:
                try:
                    async with self._wire.lock:
                        await self._open(fresh=False)
                    await self._poll(emit)
                except LinkDown as err:
                    self._set_link(False, str(err))
                    await self._flush(emit)
                if not isinstance(self._wire, SerialLine):
                    self._wire.close()
                await asyncio.sleep(self._backoff.next_delay())
        finally:
            self._wire.release(self)

    async def _flush(self, emit: Emit) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.counters.readings += len(batch)
            await emit(batch)

    # -- connection ------------------------------------------------------------------

    async def _open(self, *, fresh: bool) -> None:
        """(Re)connect; the caller holds the wire's lock."""
        self._library_note = None
        self._stale = False
        self._mismatch = None
        self._wire.take_turn(self._trace_packet)
        if not await self._wire.open(fresh=fresh):
            self.counters.errors += 1
            reason = self._library_note or "no connection"
            raise LinkDown(f"cannot connect to {self._where}: {reason}")
        self.counters.connects += 1
        if self.counters.connects > 1:
            self.counters.reconnects += 1

    def library_line(self, level: int, message: str) -> None:
        """A line pymodbus logged from this device's task: kept as the reason, not logged."""
        self._library_note = message.removeprefix("Failed to connect ").strip()
        log.debug("pymodbus", where=self._where, line=message)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # Only one request is ever outstanding, so the bytes that arrive must be exactly its
        # answer: anything more, or an answer to another transaction, is a stale answer.
        if sending:
            self._tid = data[:2]
            return data
        if len(data) <= self._unit_at:
            return data
        unit = data[self._unit_at]
        if self._unit and unit != self._unit:
            self._mismatch = f"answer from unit {unit}, expected {self._unit}"
        if self._unit_at:  # MBAP: transaction id, length
            if data[:2] != self._tid or len(data) > 6 + int.from_bytes(data[4:6], "big"):
                self._stale = True
        elif len(data) > 2:  # RTU: unit, function, byte count of a read answer, CRC
            function = data[1]
            size = 5 if function & 0x80 else 5 + data[2] if function in (1, 2, 3, 4) else 0
            if size and len(data) > size:
                self._stale = True
        return data

    # -- polling ---------------------------------------------------------------------

    async def _poll(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for group in self._groups:
            # A new connection starts from the coalesced plan: a split may have been
            # caused by a device that was still starting up.
            group.jobs = [_Job.of(r, self._every) for r in group.planned]
            group.due = start
        counters = self.counters
        while True:
            now = loop.time()
            due = min(g.due for g in self._groups)
            if due > now:
                await asyncio.sleep(due - now)
                now = loop.time()
            for group in self._groups:
                if group.due > now + _EARLY_S:
                    continue
                counters.max_lag_s = max(counters.max_lag_s, now - group.due)
                await self._cycle(group)
                counters.cycles += 1
                group.due += group.interval
                after = loop.time()
                if group.due <= after:
                    missed = int((after - group.due) // group.interval) + 1
                    group.due += missed * group.interval
                    counters.late_cycles += missed
            if self._pending:
                batch, self._pending = self._pending, []
                counters.readings += len(batch)
                await emit(batch)

    async def _cycle(self, group: _Group) -> None:
        out = self._pending
        machine = self.machine
        i = 0
        try:
            while i < len(group.jobs):
                job = group.jobs[i]
                response = await self._read(job.request, job.read)
                ts = datetime.now(UTC)
                if self._link is not True:
                    self._set_link(True, None, ts)
                if response.isError():
                    code = response.exception_code
                    parts = split(job.request) if code in _SPLIT_CODES else [job.request]
                    if len(parts) > 1:
                        self._split(job.request, parts, code)
                        group.jobs[i : i + 1] = [_Job.of(p, self._every) for p in parts]
                        continue  # read the parts now, in this cycle
                    out += _bad(machine, job.request, ts, exception_text(code))
                    job.decoder.forget()  # the next good answer reports every tag again
                elif job.bits:
                    out += job.decoder.read(machine, response.bits, ts)
                else:
                    out += job.decoder.read(machine, register_bytes(response), ts)  # type: ignore[arg-type]
                i += 1
        except LinkDown as err:
            ts = datetime.now(UTC)
            for job in group.jobs[i:]:
                out += _bad(machine, job.request, ts, str(err))
            raise

    async def _read(self, request: Request, method: str) -> Any:
        """The device's answer to `request` (maybe an exception response), or LinkDown."""
        wire = self._wire
        async with wire.lock:  # a serial line's turn; free on a device's own connection
            wire.take_turn(self._trace_packet)
            return await self._attempts(request, method)

    async def _attempts(self, request: Request, method: str) -> Any:
        counters = self.counters
        attempts = self.connector.retries + 1
        reason = ""
        for attempt in range(attempts):
            if self._stale:
                # An answer nobody asked for came in: the stream is out of step.
                counters.errors += 1
                log.debug("modbus stale answer, reconnecting", where=self._where)
                await self._open(fresh=True)
            elif attempt:
                # A fresh connection: whatever the old one still delivers is discarded.
                await self._open(fresh=True)
            client = self._wire.client
            if client is None or not client.connected:
                counters.errors += 1
                raise LinkDown(f"connection to {self._where} closed")
            counters.requests += 1
            try:
                response = await getattr(client, method)(
                    request.start, count=request.count, device_id=self._unit
                )
            except ConnectionException as err:
                counters.errors += 1
                raise LinkDown(f"connection to {self._where} lost: {err}") from err
            except ModbusException:
                counters.timeouts += 1
                counters.errors += 1
                reason = self._mismatch or f"no answer within {self.connector.timeout_s:g} s"
                continue
            problem = self._check(request, response)
            if problem is None:
                counters.responses += 1
                if response.isError():
                    counters.exceptions += 1
                return response
            counters.errors += 1
            reason = problem
        raise LinkDown(f"{reason} ({request}, {attempts} attempt{'s' * (attempts > 1)})")

    def _check(self, request: Request, response: Any) -> str | None:
        """Why `response` cannot be the answer to `request`, or None."""
        if response.isError():
            if response.function_code & 0x7F != request.function_code:
                return f"exception for function {response.function_code & 0x7F}"
            return None
        if response.function_code != request.function_code:
            return f"answer to function {response.function_code}, asked {request.function_code}"
        if request.table in ("hr", "ir"):
            got = len(register_bytes(response)) // 2
            if got != request.count:
                return f"{got} registers in answer, asked {request.count}"
        elif not request.count <= len(response.bits) < request.count + 8:
            return f"{len(response.bits)} bits in answer, asked {request.count}"
        return None

    def _split(self, request: Request, parts: list[Request], code: int) -> None:
        self.counters.splits += 1
        log.info(
            "modbus request refused, reading in parts",
            where=self._where,
            request=str(request),
            refused=exception_text(code),
            parts=[str(p) for p in parts],
        )

    def _set_link(self, up: bool, error: str | None, ts: datetime | None = None) -> None:
        if self._link is up:
            return
        ts = ts or datetime.now(UTC)
        was = self._link
        self._link = up
        self._pending.append(Link(self.machine, up, ts, error))
        if up:
            self._backoff.reset()
            if was is None:
                log.info("modbus device connected", where=self._where, unit=self._unit)
            else:
                down_s = round(time.monotonic() - self._down_since, 1)
                log.info("modbus device recovered", where=self._where, down_s=down_s)
        else:
            self._down_since = time.monotonic()
            event = "modbus device unreachable" if was is None else "modbus device lost"
            log.warning(event, where=self._where, unit=self._unit, error=error)


def _bad(machine: str, request: Request, ts: datetime, status: str) -> list[Sample]:
    return [Sample(machine, t.name, None, ts, "bad", status) for t in request.tags]
