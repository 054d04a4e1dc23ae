"""Metrics and health of real processes: a simulated line → `mesgw run` → Mosquitto →
`mesgw record` → PostgreSQL, scraped over HTTP; the Grafana dashboard uses only what exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ops_support import (
    SIM_LINE,
    Proc,
    fetchval,
    gateway_text,
    get,
    metric,
    parse_metrics,
    setup_db,
    spawn,
    wait_for,
    wait_logged,
)

from gateway.testing import Broker, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "mesgw.json"


async def scrape(port: int) -> dict[str, float]:
    status, body = await get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return parse_metrics(body)


async def start_line(tmp_path: Path, procs: list[Proc]) -> str:
    """The simulated line's servers, free-running; returns the gateway's [[machines]]."""
    sim = tmp_path / "line.toml"
    sim.write_text(SIM_LINE.format(opcua_port=free_port(), modbus_port=free_port()))
    printed = spawn(
        procs, tmp_path, "print", ["simulate", "--config", str(sim), "--print-gateway-config"]
    )
    assert printed.proc.wait(timeout=60) == 0
    machines = printed.text()
    spawn(procs, tmp_path, "simulator", ["simulate", "--config", str(sim)])
    return machines


async def test_gateway_and_recorder_expose_metrics_and_health(
    tmp_path: Path, broker: Broker, pg_dsn: str, prefix: str, procs: list[Proc]
) -> None:
    await setup_db(pg_dsn)
    machines = await start_line(tmp_path, procs)
    gw_port, rec_port = free_port(), free_port()
    common = dict(broker_port=broker.port, prefix=prefix, dsn=pg_dsn, outbox=tmp_path / "o.db")
    gw_conf = tmp_path / "gw.toml"
    gw_conf.write_text(gateway_text(**common, metrics_port=gw_port, machines=machines))
    rec_conf = tmp_path / "rec.toml"
    rec_conf.write_text(gateway_text(**common, metrics_port=rec_port))

    rec = spawn(procs, tmp_path, "recorder", ["record", "--config", str(rec_conf)])
    await wait_logged(rec, "subscribed")
    gw = spawn(procs, tmp_path, "gateway", ["run", "--config", str(gw_conf)])
    listening = await wait_logged(gw, "metrics listening")
    assert listening["url"] == f"http://127.0.0.1:{gw_port}/metrics"  # loopback by default

    # Both machines read, events published, acknowledged and stored.
    async def flowing() -> bool:
        s = await scrape(gw_port)
        r = await scrape(rec_port)
        return (
            metric(s, "mesgw_connector_link_up", machine="filler-1") == 1
            and metric(s, "mesgw_connector_link_up", machine="labeler-1") == 1
            and metric(s, "mesgw_mqtt_acks_total") > 0
            and metric(r, "mesgw_recorder_rows_total") > 0
        )

    await wait_for(flowing, 60, "both machines up and rows recorded")
    s = await scrape(gw_port)
    assert metric(s, "mesgw_build_info", component="gateway") == 1
    assert metric(s, "mesgw_connector_samples_total", machine="labeler-1", protocol="modbus") > 0
    assert metric(s, "mesgw_connector_samples_total", machine="filler-1", protocol="opcua") > 0
    # Modbus requests are timed: at least one per poll, each well under the 1 s timeout.
    reads = metric(s, "mesgw_connector_read_seconds_count", machine="labeler-1")
    assert reads > 0
    assert metric(s, "mesgw_connector_read_seconds_bucket", machine="labeler-1", le="1.0") == reads
    assert metric(s, "mesgw_connector_cycle_overruns_total", machine="labeler-1") >= 0
    # OPC UA subscription notifications are timed from their source timestamps: well within
    # a second of arrival on one box (publishing interval included).
    notes = metric(s, "mesgw_connector_delivery_seconds_count", machine="filler-1")
    assert notes > 0
    assert (
        metric(s, "mesgw_connector_delivery_seconds_bucket", machine="filler-1", le="1.0") == notes
    )
    assert metric(s, "mesgw_rules_events_total") > 0
    assert metric(s, "mesgw_outbox_capacity") == 1_000_000
    assert metric(s, "mesgw_mqtt_connected") == 1
    assert "mesgw_outbox_depth" in s and "mesgw_outbox_oldest_event_age_seconds" in s
    assert "mesgw_mqtt_inflight" in s

    r = await scrape(rec_port)
    assert metric(r, "mesgw_build_info", component="recorder") == 1
    assert metric(r, "mesgw_recorder_db_up") == 1
    assert metric(r, "mesgw_recorder_commit_seconds_count") == metric(
        r, "mesgw_recorder_batches_total"
    )
    assert metric(r, "mesgw_recorder_dead_letters_total") == 0
    assert metric(r, "mesgw_recorder_db_errors_total") == 0
    rows = await fetchval(pg_dsn, "select count(*) from events")
    assert isinstance(rows, int)
    assert metric(r, "mesgw_recorder_rows_total") <= rows

    for port in (gw_port, rec_port):
        status, body = await get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "alive"
        status, body = await get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200, body
        assert json.loads(body)["ready"] is True

    # The broker goes away: both are still alive, neither is ready, and /readyz says why.
    broker.stop()

    async def unready() -> bool:
        codes = [(await get(f"http://127.0.0.1:{p}/readyz"))[0] for p in (gw_port, rec_port)]
        return codes == [503, 503]

    await wait_for(unready, 30, "both to report not ready")
    status, body = await get(f"http://127.0.0.1:{gw_port}/readyz")
    assert json.loads(body)["checks"]["mqtt"] == {"ok": False, "detail": "not connected"}
    assert (await get(f"http://127.0.0.1:{gw_port}/healthz"))[0] == 200
    s = await scrape(gw_port)
    assert metric(s, "mesgw_mqtt_connected") == 0

    async def piling_up() -> bool:
        return metric(await scrape(gw_port), "mesgw_outbox_depth") > 0

    await wait_for(piling_up, 30, "events to wait in the outbox")
    assert metric(await scrape(gw_port), "mesgw_outbox_oldest_event_age_seconds") > 0

    broker.start()

    async def ready_again() -> bool:
        codes = [(await get(f"http://127.0.0.1:{p}/readyz"))[0] for p in (gw_port, rec_port)]
        return codes == [200, 200]

    await wait_for(ready_again, 30, "both ready again")
    s = await scrape(gw_port)
    assert metric(s, "mesgw_mqtt_reconnects_total") >= 1
    assert gw.stop() == 0
    assert rec.stop() == 0


async def test_recorder_not_ready_while_the_database_is_unreachable(
    tmp_path: Path, broker: Broker, prefix: str, procs: list[Proc]
) -> None:
    port = free_port()
    dead_db = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    conf = tmp_path / "rec.toml"
    conf.write_text(
        gateway_text(
            broker_port=broker.port,
            prefix=prefix,
            dsn=dead_db,
            outbox=tmp_path / "o",
            metrics_port=port,
        )
    )
    rec = spawn(procs, tmp_path, "recorder", ["record", "--config", str(conf)])
    await wait_logged(rec, "subscribed")
    status, body = await get(f"http://127.0.0.1:{port}/readyz")
    assert status == 503
    checks = json.loads(body)["checks"]
    assert checks["mqtt"]["ok"] is True
    assert checks["database"]["ok"] is False
    assert checks["database"]["detail"].startswith("unreachable")
    assert "password" not in body.lower()
    assert rec.stop() == 0


async def test_a_taken_metrics_port_never_stops_the_gateway(
    tmp_path: Path, broker: Broker, pg_dsn: str, prefix: str, procs: list[Proc]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "gw.toml"
        conf.write_text(
            gateway_text(
                broker_port=broker.port,
                prefix=prefix,
                dsn=pg_dsn,
                outbox=tmp_path / "o.db",
                metrics_port=port,
                machines='[[machines]]\nid = "m1"\narea = "a"\nline = "l"\n'
                'connector = { type = "synthetic", count_interval_s = 0.1 }\n',
            )
        )
        gw = spawn(procs, tmp_path, "gateway", ["run", "--config", str(conf)])
        error = await wait_logged(gw, "metrics: cannot listen; retrying")
        assert error["address"] == f"127.0.0.1:{port}"
        await wait_logged(gw, "started")
        assert gw.proc.poll() is None
    assert gw.stop() == 0


async def review_metric_names(dsn: str) -> set[str]:
    """What a running review service (gateway.review) exposes, after one page request."""
    import aiohttp
    from pydantic import SecretStr

    from gateway.config import MetricsSection, ReviewSection, Settings, StoreSection
    from gateway.review.service import running

    settings = Settings(
        store=StoreSection(dsn=SecretStr(dsn), pool_size=2),
        review=ReviewSection(port=0),
        metrics=MetricsSection(port=0),
    )
    async with running(settings) as listening, aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{listening.port}/login") as page:
            assert page.status == 200
        assert listening.metrics is not None
        async with http.get(listening.metrics.url + "/metrics") as resp:
            text = await resp.text()
    return {key.partition("{")[0] for key in parse_metrics(text)}


def dashboard_metric_names() -> set[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    names = set()
    for expr in exprs:
        names |= set(re.findall(r"\b(mesgw_[a-z_]+)", expr))
    return names


async def test_every_metric_the_dashboard_uses_is_exposed(
    tmp_path: Path, broker: Broker, pg_dsn: str, prefix: str, procs: list[Proc]
) -> None:
    """Scrapes a gateway (Modbus, OPC UA, in-process recorder) and checks each name."""
    await setup_db(pg_dsn)
    machines = await start_line(tmp_path, procs)
    port = free_port()
    conf = tmp_path / "gw.toml"
    conf.write_text(
        gateway_text(
            broker_port=broker.port,
            prefix=prefix,
            dsn=pg_dsn,
            outbox=tmp_path / "o.db",
            metrics_port=port,
            machines=machines,
            in_process=True,
        )
    )
    gw = spawn(procs, tmp_path, "gateway", ["run", "--config", str(conf)])

    async def recorded() -> bool:
        try:
            s = await scrape(port)
            return (
                metric(s, "mesgw_recorder_rows_total") > 0
                and metric(s, "mesgw_connector_read_seconds_count") > 0
            )
        except (OSError, KeyError):
            return False

    await wait_for(recorded, 60, "rows recorded and reads timed")
    exposed = {key.partition("{")[0] for key in await scrape(port)}
    exposed |= await review_metric_names(pg_dsn)
    histograms = {n.removesuffix("_bucket") for n in exposed if n.endswith("_bucket")}
    used = dashboard_metric_names()
    missing = {n for n in used if n not in exposed and n not in histograms}
    assert not missing, f"the dashboard queries metrics nobody exposes: {sorted(missing)}"
    assert len(used) >= 15
    assert gw.stop() == 0
