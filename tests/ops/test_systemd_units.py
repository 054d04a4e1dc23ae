"""The shipped systemd units: hardened (systemd-analyze's exposure ≤ 2.0), and the Python
daemons really start, get ready and work under those settings — installed by deploy/install
and run by a real systemd (PID 1 of private namespaces, `systemd_box`)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from ops_support import (
    SIM_LINE,
    Proc,
    fetchval,
    get,
    metric,
    parse_metrics,
    setup_db,
    spawn,
    wait_for,
)
from systemd_box import SystemdBox, available

from gateway.testing import Broker, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")


def exposure(unit: Path) -> float:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        cwd=unit.parent,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def test_every_service_has_a_unit() -> None:
    assert {u.name for u in UNITS} == {
        "mesgw.service",
        "mesgw-recorder.service",
        "mesgw-review.service",
    }


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_exposure_is_at_most_2(unit: Path) -> None:
    assert exposure(unit) <= MAX_EXPOSURE


def test_units_point_at_the_installed_command_and_docs() -> None:
    install = (ROOT / "deploy" / "install").read_text()
    assert "ln -sf /opt/mesgw/bin/mesgw /usr/local/bin/mesgw" in install
    for unit in UNITS:
        text = unit.read_text()
        for line in text.splitlines():
            if line.startswith(("ExecStart=", "ExecStartPre=")):
                assert line.split("=", 1)[1].startswith("/usr/local/bin/mesgw ")
        docs = re.search(r"^Documentation=(.*)$", text, re.M)
        assert docs, unit.name
        for url in docs.group(1).split():
            installed = url.removeprefix("file:///usr/share/doc/mes-gateway/")
            assert (ROOT / installed).is_file(), f"{unit.name}: {url} is not installed"
            assert f'"$DOC/{installed}"' in install, f"deploy/install does not install {url}"


@pytest.fixture
def box(tmp_path: Path) -> Iterator[SystemdBox]:
    why = available()
    if why is not None:
        pytest.skip(f"the systemd box {why}")
    b = SystemdBox(tmp_path / "box")
    b.workdir.mkdir()
    b.start()
    try:
        yield b
    finally:
        b.kill()


def service(box: SystemdBox, unit: str, prop: str) -> str:
    return box.run(["systemctl", "show", "-p", prop, "--value", unit]).stdout.strip()


async def test_gateway_and_recorder_start_under_their_units(
    box: SystemdBox, broker: Broker, pg_dsn: str, prefix: str, tmp_path: Path, procs: list[Proc]
) -> None:
    """The simulated line (OPC UA and Modbus) on the host, read by the boxed gateway."""
    await setup_db(pg_dsn)
    sim = tmp_path / "line.toml"
    sim.write_text(SIM_LINE.format(opcua_port=free_port(), modbus_port=free_port()))
    printed = spawn(
        procs, tmp_path, "print", ["simulate", "--config", str(sim), "--print-gateway-config"]
    )
    assert printed.proc.wait(timeout=60) == 0
    machines = printed.text()
    spawn(procs, tmp_path, "simulator", ["simulate", "--config", str(sim)])
    install = box.run(
        ["env", "PYTHON=/usr/bin/python3", str(ROOT / "deploy" / "install")], timeout=900
    )
    assert install.returncode == 0, install.stderr[-3000:]
    check = box.run(["sh", "-c", "command -v mesgw && ls /usr/share/doc/mes-gateway/deploy"])
    assert check.stdout.split() == ["/usr/local/bin/mesgw", "README.md"]

    gw_metrics, rec_metrics = free_port(), free_port()
    common = f"""
[mqtt]
port = {broker.port}
prefix = "{prefix}"
reconnect_min_s = 0.1
[store]
dsn = "{pg_dsn}"
timescaledb = "off"
[logging]
format = "json"
"""
    box.write(
        "/etc/mesgw/gateway.toml",
        f"""[gateway]
id = "gw-box"
site = "s"
status_interval_s = 1
[api]
port = 0
[metrics]
port = {gw_metrics}
{common}
[rules]
count_interval_s = 1
{machines}
""",
        mode="0640",
        group="mesgw",
    )
    box.write(
        "/etc/mesgw/recorder.toml",
        f'[recorder]\nclient_id = "rec-box"\nbatch_wait_ms = 10\n'
        f"[metrics]\nport = {rec_metrics}\n{common}",
    )
    for unit in ("mesgw-recorder.service", "mesgw.service"):
        started = box.run(["systemctl", "start", unit], timeout=120)
        assert started.returncode == 0, (
            unit,
            started.stderr,
            box.run(["systemctl", "status", unit]).stdout,
        )
        # Type=notify: "active" only after the daemon itself said READY=1.
        assert service(box, unit, "ActiveState") == "active"
        assert service(box, unit, "Type") == "notify"

    # Under its unit the gateway runs as mesgw, seccomp-filtered, without capabilities.
    pid = service(box, "mesgw.service", "MainPID")
    status = box.run(["cat", f"/proc/{pid}/status"]).stdout
    assert re.search(r"^Seccomp:\s+2$", status, re.M), status
    assert re.search(r"^CapEff:\s+0+$", status, re.M)
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    user = box.run(["ps", "-o", "user=", "-p", pid]).stdout.strip()
    assert user == "mesgw"

    # ...it writes its outbox in its StateDirectory and serves its metrics,
    async def ready() -> bool:
        try:
            return (await get(f"http://127.0.0.1:{gw_metrics}/readyz"))[0] == 200
        except OSError:
            return False

    await wait_for(ready, 30, "the boxed gateway's /readyz")
    assert box.run(["test", "-f", "/var/lib/mesgw/outbox.db"]).returncode == 0

    # ...the watchdog is armed and fed, the status line is the daemon's.
    assert service(box, "mesgw.service", "WatchdogUSec") == "30s"
    assert "outbox" in service(box, "mesgw.service", "StatusText")

    async def both_up() -> bool:
        _, text = await get(f"http://127.0.0.1:{gw_metrics}/metrics")
        scraped = parse_metrics(text)
        return all(
            metric(scraped, "mesgw_connector_link_up", machine=m) == 1
            for m in ("filler-1", "labeler-1")
        )

    await wait_for(both_up, 60, "the boxed gateway reading OPC UA and Modbus")

    # ...and events go through the broker into the database by the recorder's unit.
    async def stored() -> bool:
        count = await fetchval(pg_dsn, "select count(*) from events where gateway = 'gw-box'")
        return isinstance(count, int) and count >= 10

    await wait_for(stored, 60, "the boxed gateway's events in PostgreSQL")
    rec_ready, body = await get(f"http://127.0.0.1:{rec_metrics}/readyz")
    assert rec_ready == 200, body

    # The review service (a dynamic user too) serves its page and answers ready from the
    # installed package: templates and static files included.
    review_port, review_metrics = free_port(), free_port()
    box.write(
        "/etc/mesgw/review.toml",
        f'[store]\ndsn = "{pg_dsn}"\n[review]\nport = {review_port}\n'
        f'[metrics]\nport = {review_metrics}\n[logging]\nformat = "json"\n',
    )
    started = box.run(["systemctl", "start", "mesgw-review.service"], timeout=120)
    assert started.returncode == 0, box.run(["systemctl", "status", "mesgw-review"]).stdout
    assert service(box, "mesgw-review.service", "ActiveState") == "active"

    async def review_ready() -> bool:
        try:
            return (await get(f"http://127.0.0.1:{review_metrics}/readyz"))[0] == 200
        except OSError:
            return False

    await wait_for(review_ready, 30, "the boxed review service's /readyz")
    page_status, page = await get(f"http://127.0.0.1:{review_port}/login")
    assert page_status == 200 and "<form" in page
    assert box.run(["systemctl", "stop", "mesgw-review.service"]).returncode == 0
    assert service(box, "mesgw-review.service", "Result") == "success"

    # An orderly stop through systemd: the retained state says the watch has ended.
    topics = [f"{prefix}/s/packaging/line-1/{m}/state" for m in ("filler-1", "labeler-1")]

    async def watched() -> bool:
        states = [await asyncio.to_thread(retained_state, broker, t) for t in topics]
        return all(s["data"]["bucket"] != "unknown" for s in states)  # type: ignore[index]

    await wait_for(watched, 60, "both machines in a known state")
    stopped = box.run(["systemctl", "stop", "mesgw.service"], timeout=60)
    assert stopped.returncode == 0
    assert service(box, "mesgw.service", "Result") == "success"
    for topic in topics:
        state = retained_state(broker, topic)
        assert state["data"] == {**state["data"], "bucket": "unknown", "reason": "gateway stopped"}
    assert box.run(["systemctl", "stop", "mesgw-recorder.service"]).returncode == 0
    assert service(box, "mesgw-recorder.service", "Result") == "success"


def retained_state(broker: Broker, topic: str) -> dict[str, object]:
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.connect(broker.host, broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    assert got, f"nothing retained on {topic}"
    payload: dict[str, object] = json.loads(got[0])
    return payload
