"""The rules stage: readings, ticks and order commands in, committed events out.

Every input goes through one bounded queue and one task, so the rules see samples, the
passing of time and work-order commands in a single order, exactly as replay does. Each
batch's events are committed to the outbox together with the rules' state, so after a
restart the counter baselines are those of the last committed count: nothing counted twice,
nothing lost. A command is answered only after the events it caused are committed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connectors.sample import Reading
from gateway.backoff import Backoff
from gateway.config import Settings
from gateway.errors import OutboxFull
from gateway.events import Draft, now_utc
from gateway.logging import get_logger
from gateway.orders.desk import ScheduleRejected
from gateway.outbox import Outbox
from gateway.samples import SampleLog
from rules.engine import Engine
from rules.inputs import CommandResult, GatewayMark, OrderCommand, PlannedOrder, Tick
from rules.spec import machine_spec, plant_rules

log = get_logger("gateway.pipeline")

STATE_KEY = "rules"
# The state is saved with every commit of events, and at least this often while time passes
# without any (so a first baseline or a long stop is not lost to a crash either).
STATE_SAVE_INTERVAL_S = 5.0


def build_rules(settings: Settings) -> Engine:
    """The rules for every machine read by a connector (synthetic machines bypass them)."""
    machines = [m for m in settings.machines if m.connector.type != "synthetic"]
    return Engine([machine_spec(m) for m in machines], plant_rules(settings))


class Rules(Protocol):
    """What the pipeline needs of the rules engine (`rules.engine.Engine`)."""

    def feed(self, item: Reading | Tick) -> list[Draft]: ...

    def in_instant_order(self, items: Iterable[Reading | Tick]) -> Iterator[Reading | Tick]: ...

    def command(self, cmd: OrderCommand) -> tuple[CommandResult, list[Draft]]: ...

    def plan(self, orders: Sequence[PlannedOrder]) -> int: ...

    def orders(self) -> list[dict[str, Any]]: ...

    def stop(self, ts: datetime) -> list[Draft]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, snapshot: dict[str, Any]) -> None: ...


@dataclass(slots=True)
class _Drafts:
    drafts: Sequence[Draft]


@dataclass(slots=True)
class _Readings:
    items: Sequence[Reading | Tick]


@dataclass(slots=True)
class _Command:
    cmd: OrderCommand
    reply: asyncio.Future[CommandResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True)
class _Plan:
    orders: Sequence[PlannedOrder]
    reply: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


_Item = _Drafts | _Readings | _Command | _Plan


class Pipeline:
    """Sources put work on a bounded queue; one rules task turns it into committed events."""

    def __init__(
        self,
        outbox: Outbox,
        rules: Rules | None = None,
        *,
        queue_size: int = 10_000,
        max_batch: int = 5000,
        sample_log: SampleLog | None = None,
    ) -> None:
        self.outbox = outbox
        self.rules = rules
        self.sample_log = sample_log
        # None marks the end of the stream.
        self.queue: asyncio.Queue[_Item | None] = asyncio.Queue(queue_size)
        self.max_batch = max_batch
        self.rule_errors = 0
        self.events_committed = 0  # drafts committed to the outbox (metrics: rules events/s)
        self._saved_at: float | None = None  # the latest tick's time when state was saved

    # -- inputs ------------------------------------------------------------------------------

    async def emit(self, drafts: Sequence[Draft]) -> None:
        """Events made elsewhere (the synthetic source): committed as they are."""
        if drafts:
            await self.queue.put(_Drafts(drafts))

    async def readings(self, items: Sequence[Reading | Tick]) -> None:
        """Connector readings and clock ticks for the rules."""
        if items:
            await self.queue.put(_Readings(items))

    async def submit(self, cmd: OrderCommand) -> CommandResult:
        """Run a work-order command through the rules; answered once its events are committed."""
        item = _Command(cmd)
        await self.queue.put(item)
        return await item.reply

    async def plan(self, orders: Sequence[PlannedOrder]) -> int:
        """Import scheduled orders (master data) into the rules."""
        item = _Plan(orders)
        await self.queue.put(item)
        return await item.reply

    def list_orders(self) -> list[dict[str, Any]]:
        """Active and planned orders (read between rules steps: the loop is single-threaded)."""
        return self.rules.orders() if self.rules is not None else []

    async def restore(self) -> bool:
        """Load the rules' state committed last time; False when there was none."""
        if self.rules is None:
            return False
        saved = (await self.outbox.load_state()).get(STATE_KEY)
        if saved is None:
            return False
        self.rules.restore(json.loads(saved))
        return True

    async def close(self) -> None:
        await self.queue.put(None)

    # -- the rules task ----------------------------------------------------------------------

    async def run_rules(self) -> None:
        """Process the queue in arrival order, gathering what is queued into one commit."""
        while True:
            item = await self.queue.get()
            if item is None:
                await self._save_state()
                return
            batch = [item]
            size = self._size(item)
            end = False
            while size < self.max_batch and not self.queue.empty():
                more = self.queue.get_nowait()
                if more is None:
                    end = True
                    break
                batch.append(more)
                size += self._size(more)
            await self._process(batch)
            if end:
                await self._save_state()
                return

    @staticmethod
    def _size(item: _Item) -> int:
        if isinstance(item, _Drafts):
            return len(item.drafts)
        if isinstance(item, _Readings):
            return len(item.items)
        return 1

    async def _process(self, batch: list[_Item]) -> None:
        drafts: list[Draft] = []
        replies: list[tuple[asyncio.Future[Any], Any]] = []
        tick: Tick | None = None
        for item in batch:
            if isinstance(item, _Drafts):
                drafts.extend(item.drafts)
            elif isinstance(item, _Readings):
                if self.sample_log is not None:
                    self.sample_log.add(r for r in item.items if not isinstance(r, Tick))
                if self.rules is not None:
                    for reading in self.rules.in_instant_order(item.items):
                        drafts.extend(self._feed(reading))
                        if isinstance(reading, Tick):
                            tick = reading
            elif isinstance(item, _Command):
                if self.sample_log is not None:
                    self.sample_log.add([item.cmd])
                replies.append((item.reply, self._command(item.cmd, drafts)))
            else:
                replies.append((item.reply, self._plan(item.orders)))
        stateful = self.rules is not None and bool(drafts or replies or self._state_due(tick))
        await self._commit(drafts, stateful=stateful)
        for future, value in replies:
            if future.done():
                continue
            if isinstance(value, Exception):
                future.set_exception(value)
            else:
                future.set_result(value)

    def _feed(self, reading: Reading | Tick) -> list[Draft]:
        assert self.rules is not None
        try:
            return self.rules.feed(reading)
        except Exception:
            # A rules defect must not stop production recording for every machine: the
            # reading is logged with the traceback and skipped, the daemon keeps running.
            self.rule_errors += 1
            log.exception("rules failed on a reading; skipped", reading=repr(reading))
            return []

    def _plan(self, orders: Sequence[PlannedOrder]) -> int | ScheduleRejected:
        if self.rules is None:
            return ScheduleRejected("no rules configured")
        try:
            return self.rules.plan(orders)
        except ValueError as err:  # the rules refuse the schedule as a whole
            return ScheduleRejected(str(err))

    def _command(self, cmd: OrderCommand, drafts: list[Draft]) -> CommandResult:
        if self.rules is None:
            return CommandResult(ok=False, machine=cmd.machine, error="no rules configured")
        try:
            result, made = self.rules.command(cmd)
        except Exception as err:
            self.rule_errors += 1
            log.exception("rules failed on an order command", command=repr(cmd))
            return CommandResult(ok=False, machine=cmd.machine, error=f"internal error: {err}")
        drafts.extend(made)
        return result

    def _state_due(self, tick: Tick | None) -> bool:
        if tick is None:
            return False
        now = tick.ts.timestamp()
        if self._saved_at is None or now - self._saved_at >= STATE_SAVE_INTERVAL_S:
            self._saved_at = now
            return True
        return False

    async def _save_state(self) -> None:
        # An orderly stop closes the open count intervals, so the store holds every part
        # counted up to the stop, and marks every machine unknown (nobody watches it now);
        # the next start counts on from the saved values. The sample log records the stop,
        # so that replay knows the time away as unknown too.
        if self.rules is not None:
            at = now_utc()
            if self.sample_log is not None:
                self.sample_log.add([GatewayMark("stop", at)])
            await self._commit(self.rules.stop(at), stateful=True)

    async def _commit(self, batch: list[Draft], *, stateful: bool) -> None:
        if not batch and not stateful:
            return
        state = None
        if stateful and self.rules is not None:
            state = {STATE_KEY: json.dumps(self.rules.snapshot(), separators=(",", ":")).encode()}
        # Production counts and downtime are never dropped: a full outbox holds the batch
        # here (and, through the bounded queue, the sources) until there is room again.
        backoff = Backoff(base_s=0.5, cap_s=10.0)
        while True:
            try:
                await self.outbox.append(batch, state=state)
            except OutboxFull:
                delay = backoff.next_delay()
                if backoff.attempt == 1:
                    log.warning("outbox full; holding events", held=len(batch))
                await asyncio.sleep(delay)
            else:
                self.events_committed += len(batch)
                if backoff.attempt:
                    log.info("outbox has room again; events committed", held=len(batch))
                return
