"""`mesgw run`: one TaskGroup of named tasks, started sinks-first and stopped sources-first.

Shutdown order on SIGTERM/SIGINT, each stage bounded, all inside `shutdown_timeout_s`:
sources stop → the rules stage drains its queue into the outbox → the outbox is flushed to
the broker (up to `flush_timeout_s`; what is left stays on disk for the next start) →
publisher and recorder disconnect → the outbox closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

import structlog

from gateway import __version__
from gateway.config import Settings
from gateway.events import now_utc
from gateway.logging import get_logger
from gateway.metrics import Checks, MetricsServer, new_registry
from gateway.mqtt.publisher import Publisher
from gateway.orders.http import OrderApi
from gateway.orders.mqtt import OrderCommandListener
from gateway.orders.schedule import import_startup_schedule
from gateway.outbox import Outbox
from gateway.pipeline import Pipeline, build_rules
from gateway.recorder import Recorder
from gateway.samples import SampleLog
from gateway.sources import run_clock, run_sources
from gateway.systemd import Notifier
from gateway.telemetry import (
    SourceMetrics,
    gateway_checks,
    recorder_checks,
    register_gateway,
    register_recorder,
)
from rules.inputs import GatewayMark

log = get_logger("gateway.daemon")


async def _watchdog(notifier: Notifier) -> None:
    # Ping at half the interval: a blocked event loop stops the pings and systemd restarts us.
    assert notifier.watchdog_s is not None
    while True:
        notifier.watchdog()
        await asyncio.sleep(notifier.watchdog_s / 2)


async def _report(settings: Settings, outbox: Outbox, publisher: Publisher, n: Notifier) -> None:
    while True:
        stats = outbox.stats()
        age = f"{stats.oldest_age_s:.1f}s" if stats.oldest_age_s is not None else "-"
        mqtt = "connected" if publisher.connected else "disconnected"
        n.status(f"outbox {stats.depth}/{stats.capacity} oldest {age}; mqtt {mqtt}")
        if stats.depth:
            log.info("outbox", depth=stats.depth, oldest_age_s=stats.oldest_age_s, mqtt=mqtt)
        await asyncio.sleep(settings.gateway.status_interval_s)


async def _stop_task(task: asyncio.Task[None] | None, timeout: float) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout)


async def run(settings: Settings, *, notifier: Notifier | None = None) -> None:
    """Run the gateway until SIGTERM/SIGINT, then stop in order."""
    n = notifier or Notifier()
    structlog.contextvars.bind_contextvars(gateway=settings.gateway.id)
    outbox = Outbox(settings.outbox, gateway_id=settings.gateway.id, site=settings.gateway.site)
    await outbox.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await _run(settings, outbox, stop, n)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await outbox.close()
        n.close()
        log.info("stopped", outbox_depth=outbox.stats().depth)


async def _run(settings: Settings, outbox: Outbox, stop: asyncio.Event, n: Notifier) -> None:
    publisher = Publisher(settings, outbox, version=__version__)
    recorder = Recorder(settings) if settings.recorder.in_process else None
    sample_log = None
    if settings.samples.record:
        sample_log = SampleLog(settings.samples.directory, keep_days=settings.samples.keep_days)
    pipeline = Pipeline(
        outbox, build_rules(settings), max_batch=settings.outbox.max_batch, sample_log=sample_log
    )
    if await pipeline.restore():
        log.info("rules state restored: counting continues from the last committed values")
    if sample_log is not None:
        sample_log.add([GatewayMark("start", now_utc())])
    listener = OrderCommandListener(settings, pipeline)
    api = OrderApi(settings, pipeline) if settings.api.enabled else None
    sources = SourceMetrics()
    metrics = None
    if settings.metrics.enabled:
        registry = new_registry("gateway")
        register_gateway(
            registry,
            outbox=outbox,
            publisher=publisher,
            pipeline=pipeline,
            sources=sources,
            machines=len(settings.machines),
        )
        if recorder is not None:
            register_recorder(registry, recorder)

        async def ready() -> Checks:
            return await gateway_checks(publisher, outbox, recorder)

        metrics = MetricsServer(settings.metrics, "run", registry, ready)

    async def every_tick() -> None:
        if sample_log is not None:
            await asyncio.to_thread(sample_log.maintain, now_utc())

    async with asyncio.TaskGroup() as group:
        # Sinks first: whatever the sources produce has somewhere to go.
        helpers: list[asyncio.Task[None]] = []
        if metrics is not None:
            helpers.append(group.create_task(metrics.run(), name="metrics"))
        if recorder is not None:
            helpers.append(group.create_task(recorder.run(), name="recorder"))
            # A recorder's first subscription creates its session; events published before
            # it would reach nobody. Later starts find the session kept by the broker.
            if not await recorder.wait_subscribed(settings.gateway.flush_timeout_s):
                log.warning("recorder not subscribed yet; publishing anyway")
        helpers.append(group.create_task(publisher.run(), name="mqtt-publisher"))
        rules = group.create_task(pipeline.run_rules(), name="rules")
        await import_startup_schedule(settings, pipeline)
        inputs = [
            group.create_task(listener.run(), name="order-commands"),
            group.create_task(run_clock(pipeline.readings, also=every_tick), name="clock"),
            group.create_task(
                run_sources(
                    settings,
                    pipeline.readings,
                    pipeline.emit,
                    metrics=sources if metrics is not None else None,
                ),
                name="sources",
            ),
        ]
        if api is not None:
            inputs.append(group.create_task(api.run(), name="order-api"))
        helpers.append(group.create_task(_report(settings, outbox, publisher, n), name="status"))
        if n.watchdog_s:
            helpers.append(group.create_task(_watchdog(n), name="watchdog"))
        # Everything built at start lives as long as the process: moving it out of the
        # collector's reach keeps full collections (and their pauses) short.
        gc.freeze()
        n.ready(f"running {len(settings.machines)} machines")
        log.info("started", version=__version__, machines=len(settings.machines))

        await stop.wait()
        n.stopping("stopping: sources")
        log.info("stopping")
        try:
            async with asyncio.timeout(settings.gateway.shutdown_timeout_s):
                # Commands still queued are refused ("gateway is stopping"), never left hanging.
                await listener.stop()
                if api is not None:
                    await api.stop()
                for task in inputs:
                    await _stop_task(task, settings.gateway.shutdown_timeout_s)
                n.status("stopping: draining rules")
                await pipeline.close()
                await rules
                await every_tick()
                n.status("stopping: flushing outbox")
                flushed = await publisher.flush(settings.gateway.flush_timeout_s)
                if not flushed:
                    log.warning(
                        "outbox not flushed; kept on disk for the next start",
                        depth=outbox.stats().depth,
                    )
                if recorder is not None and flushed:
                    # The broker has every event; the in-process recorder gets them a moment
                    # later. Stopping it first would leave them at the broker until the next
                    # start (kept, not lost), and the store behind the line until then.
                    n.status("stopping: recording the last events")
                    last = outbox.stats().last_seq
                    if not await recorder.wait_stored(
                        settings.gateway.id, last, settings.gateway.flush_timeout_s
                    ):
                        log.warning(
                            "recorder stopped before storing the last events; the broker"
                            " keeps them for its next start",
                            last_seq=last,
                            stored_seq=recorder.stored_seq.get(settings.gateway.id, 0),
                        )
                await publisher.stop()
                if recorder is not None:
                    await recorder.stop()
        except TimeoutError:
            log.error(
                "shutdown limit reached; cancelling", limit_s=settings.gateway.shutdown_timeout_s
            )
        for task in (rules, *inputs, *helpers):
            task.cancel()


async def run_recorder(settings: Settings, *, notifier: Notifier | None = None) -> None:
    """`mesgw record`: the recorder alone, until SIGTERM/SIGINT."""
    n = notifier or Notifier()
    recorder = Recorder(settings)
    metrics = None
    if settings.metrics.enabled:
        registry = new_registry("recorder")
        register_recorder(registry, recorder)

        async def ready() -> Checks:
            return await recorder_checks(recorder)

        metrics = MetricsServer(settings.metrics, "record", registry, ready)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as group:
            served = group.create_task(metrics.run(), name="metrics") if metrics else None
            task = group.create_task(recorder.run(), name="recorder")
            watchdog = group.create_task(_watchdog(n), name="watchdog") if n.watchdog_s else None
            n.ready("recording")
            log.info("recorder started", version=__version__)
            await stop.wait()
            n.stopping()
            try:
                async with asyncio.timeout(settings.gateway.shutdown_timeout_s):
                    await recorder.stop()
            except TimeoutError:
                # Nothing is lost: what was not committed was not acknowledged either.
                log.error(
                    "shutdown limit reached; cancelling the recorder",
                    limit_s=settings.gateway.shutdown_timeout_s,
                )
            task.cancel()
            for helper in (watchdog, served):
                if helper is not None:
                    helper.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        n.close()
