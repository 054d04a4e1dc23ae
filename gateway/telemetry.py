"""What `mesgw run` and `mesgw record` expose as metrics, and what "ready" means for each.

Counts come from integers the components keep anyway (device counters, outbox statistics,
publisher and recorder tallies) and are turned into metric families only when scraped; the
two histograms (connector read latency, recorder commit latency) are observed once per
request and once per batch, never per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from connectors.sample import Emit, Reading
from gateway.metrics import Checks, Live

READ_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Source timestamp → arrival of subscribed values: the publishing interval and the network.
DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def commit_histogram() -> Histogram:
    """The recorder's commit latency (one observation per committed batch)."""
    return Histogram(
        "mesgw_recorder_commit_seconds",
        "Time to write one batch of events to the store, retries included",
        buckets=COMMIT_BUCKETS,
        registry=None,
    )


@dataclass
class _Machine:
    protocol: str
    device: Any
    samples: int = 0
    batches: int = 0


@dataclass
class SourceMetrics:
    """Per-machine connector figures: link, reconnects, overruns, samples, read latency."""

    machines: dict[str, _Machine] = field(default_factory=dict)
    read_seconds: Histogram = field(
        default_factory=lambda: Histogram(
            "mesgw_connector_read_seconds",
            "Request to response time of connector reads (Modbus requests, OPC UA poll reads)",
            ["machine", "protocol"],
            buckets=READ_BUCKETS,
            registry=None,
        )
    )

    delivery_seconds: Histogram = field(
        default_factory=lambda: Histogram(
            "mesgw_connector_delivery_seconds",
            "Source timestamp of the newest value in an OPC UA subscription notification to its"
            " arrival (publishing interval, network, and any clock offset of the server)",
            ["machine", "protocol"],
            buckets=DELIVERY_BUCKETS,
            registry=None,
        )
    )

    def add(self, machine: str, protocol: str, device: Any) -> None:
        self.machines[machine] = _Machine(protocol, device)

    def observer(self, machine: str, protocol: str) -> Callable[[float], None]:
        return self.read_seconds.labels(machine, protocol).observe

    def delivery_observer(self, machine: str) -> Callable[[float], None]:
        return self.delivery_seconds.labels(machine, "opcua").observe

    def counted(self, machine: str, emit: Emit) -> Emit:
        """`emit` that also counts what passes (per batch: one addition, no per-sample work)."""
        entry = self.machines[machine]

        async def emit_counted(readings: Sequence[Reading]) -> object:
            entry.samples += len(readings)
            entry.batches += 1
            return await emit(readings)

        return emit_counted

    def collect(self) -> Iterable[Metric]:
        labels = ["machine", "protocol"]
        up = GaugeMetricFamily(
            "mesgw_connector_link_up",
            "1 while the link to the machine is up, 0 when down",
            labels=labels,
        )
        reconnects = CounterMetricFamily(
            "mesgw_connector_reconnects", "Connections made after the first one", labels=labels
        )
        overruns = CounterMetricFamily(
            "mesgw_connector_cycle_overruns",
            "Poll cycles skipped because a cycle overran its interval",
            labels=labels,
        )
        samples = CounterMetricFamily(
            "mesgw_connector_samples",
            "Samples and link changes handed to the rules",
            labels=labels,
        )
        for name, m in self.machines.items():
            key = [name, m.protocol]
            link = m.device.link_up
            up.add_metric(key, 1.0 if link else 0.0)
            counters = getattr(m.device, "counters", None)
            if counters is not None:
                reconnects.add_metric(key, counters.reconnects)
                overruns.add_metric(key, counters.late_cycles)
            samples.add_metric(key, m.samples)
        yield from (up, reconnects, overruns, samples)


def register_gateway(
    registry: CollectorRegistry,
    *,
    outbox: Any,
    publisher: Any,
    pipeline: Any,
    sources: SourceMetrics,
    machines: int,
) -> None:
    """The gateway's metrics: connectors, rules, outbox, MQTT publishing."""

    def collect() -> Iterable[Metric]:
        stats = outbox.stats()
        yield _gauge("mesgw_outbox_depth", "Events in the outbox not yet acknowledged", stats.depth)
        yield _gauge(
            "mesgw_outbox_capacity", "Bound of the outbox (outbox.max_events)", stats.capacity
        )
        yield _gauge(
            "mesgw_outbox_oldest_event_age_seconds",
            "Age of the oldest event in the outbox; 0 when empty",
            stats.oldest_age_s or 0.0,
        )
        yield _gauge("mesgw_outbox_last_seq", "Sequence number of the last event", stats.last_seq)
        yield _counter(
            "mesgw_rules_events",
            "Events the rules committed to the outbox",
            pipeline.events_committed,
        )
        yield _counter(
            "mesgw_rules_errors", "Readings the rules failed on (skipped)", pipeline.rule_errors
        )
        yield _gauge("mesgw_machines", "Machines configured", machines)
        yield _gauge(
            "mesgw_mqtt_connected",
            "1 while the publisher is connected to the broker",
            1.0 if publisher.connected else 0.0,
        )
        yield _counter(
            "mesgw_mqtt_published",
            "Messages handed to the broker, re-publications included",
            publisher.published,
        )
        yield _counter("mesgw_mqtt_acks", "Event messages the broker acknowledged", publisher.acked)
        yield _counter(
            "mesgw_mqtt_refused",
            "Event messages the broker refused (kept, retried)",
            publisher.refused,
        )
        yield _gauge(
            "mesgw_mqtt_inflight",
            "Messages published and not yet acknowledged",
            publisher.in_flight,
        )
        yield _counter(
            "mesgw_mqtt_reconnects",
            "Broker connections after the first",
            max(0, publisher.connects - 1),
        )
        yield from sources.collect()

    registry.register(Live(collect))
    registry.register(sources.read_seconds)
    registry.register(sources.delivery_seconds)


def register_recorder(registry: CollectorRegistry, recorder: Any) -> None:
    """The recorder's metrics: deliveries, rows, duplicates, dead letters, the database."""

    def collect() -> Iterable[Metric]:
        s = recorder.stats
        yield _counter(
            "mesgw_recorder_received", "Messages delivered, redeliveries included", s.received
        )
        yield _counter("mesgw_recorder_rows", "Events newly stored", s.written)
        yield _counter(
            "mesgw_recorder_duplicates", "Valid events the store already had", s.duplicates
        )
        yield _counter(
            "mesgw_recorder_dead_letters", "Payloads stored as dead letters", s.dead_letters
        )
        yield _counter("mesgw_recorder_batches", "Committed transactions", s.batches)
        yield _counter("mesgw_recorder_acks", "Deliveries acknowledged after their commit", s.acked)
        yield _counter(
            "mesgw_recorder_db_errors", "Failed database calls (each retried)", s.db_errors
        )
        yield _gauge(
            "mesgw_recorder_db_up",
            "1 after a successful database call, 0 after a failed one",
            1.0 if recorder.db_up else 0.0,
        )
        yield _gauge(
            "mesgw_recorder_mqtt_subscribed",
            "1 while the recorder is connected and subscribed",
            1.0 if recorder.subscribed else 0.0,
        )
        yield _gauge(
            "mesgw_recorder_pending",
            "Deliveries received and not yet committed",
            recorder.pending,
        )

    registry.register(Live(collect))
    registry.register(recorder.commit_seconds)


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> Metric:
    return CounterMetricFamily(name, doc, value=value)


async def gateway_checks(publisher: Any, outbox: Any, recorder: Any | None) -> Checks:
    """Ready: the broker has the gateway's connection (and an in-process recorder is ready)."""
    checks: dict[str, tuple[bool, str]] = {
        "mqtt": (publisher.connected, "connected" if publisher.connected else "not connected"),
        "outbox": (outbox.is_open, "open" if outbox.is_open else "closed"),
    }
    if recorder is not None:
        checks.update(await recorder_checks(recorder))
    return checks


async def recorder_checks(recorder: Any) -> Checks:
    """Ready: subscribed at the broker and the database answers."""
    subscribed = recorder.subscribed
    db_ok, detail = await recorder.check_db()
    return {
        "mqtt": (subscribed, "subscribed" if subscribed else "not subscribed"),
        "database": (db_ok, detail),
    }
