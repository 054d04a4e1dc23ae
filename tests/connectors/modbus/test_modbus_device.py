"""ModbusDevice against real pymodbus servers: values, request counts, faults, timing."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from connectors.modbus.codec import ORDERS
from connectors.modbus.device import ModbusDevice
from connectors.modbus.testing import (
    ModbusSimulator,
    NullModem,
    Readings,
    Unit,
    connector_for,
    tag_config,
)
from gateway.config import TagConfig
from gateway.testing import free_port

Start = Callable[..., Awaitable[ModbusSimulator]]
Run = Callable[[ModbusDevice, Readings], asyncio.Task[None]]

VALUES: dict[str, Any] = {
    "int16": -12345,
    "uint16": 54321,
    "int32": -123456789,
    "uint32": 3_123_456_789,
    "int64": -1_234_567_890_123_456_789,
    "uint64": 12_345_678_901_234_567_890,
    "float32": 3.25,
    "float64": -2.5e100,
    "string": "AB-42",
}


async def _load_all_types(
    sim: ModbusSimulator, table: str, order: str, at: int
) -> dict[str, TagConfig]:
    """Every type at consecutive addresses from `at`, written in `order`; the tags to read them."""
    tags: dict[str, TagConfig] = {}
    for data_type, value in VALUES.items():
        length = 5 if data_type == "string" else None
        regs = await sim.set_value(at, value, data_type, order, table=table, length=length)  # type: ignore[arg-type]
        tags[f"{table}_{order}_{data_type}".lower()] = tag_config(
            f"{table}:{at}", type=data_type, order=order, length=length
        )
        at += len(regs)
    return tags


async def test_every_type_in_every_order_through_a_real_server(
    simulator: Start, running: Run
) -> None:
    sim = await simulator()
    tags: dict[str, TagConfig] = {}
    at = 0
    for table in ("hr", "ir"):
        for order in ORDERS:
            tags |= await _load_all_types(sim, table, order, at)
            at += 40
    await sim.set_registers("hr", 500, [0b1010_0000_0000_0101, 0])
    await sim.set_bits("coil", 7, [True, False, True])
    await sim.set_bits("di", 300, [False, True])
    tags |= {
        "bit0": tag_config("hr:500.0"),
        "bit1": tag_config("hr:500.1"),
        "bit15": tag_config("hr:500.15"),
        "nonzero": tag_config("hr:500", type="bool"),
        "zero": tag_config("hr:501", type="bool"),
        "coil7": tag_config("coil:7"),
        "coil8": tag_config("coil:8"),
        "coil9": tag_config("coil:9"),
        "di301": tag_config("di:301"),
        "scaled": tag_config("ir:160", type="int16", order="ABCD", scale=0.01, offset=1),
    }
    device = ModbusDevice("press-1", connector_for(sim, poll_interval_s=5), tags)
    readings = Readings()
    running(device, readings)
    await readings.wait(lambda: len(readings.samples()) >= len(tags))

    for table in ("hr", "ir"):
        for order in ORDERS:
            for data_type, value in VALUES.items():
                sample = readings.latest(f"{table}_{order}_{data_type}".lower())
                assert (sample.value, sample.quality) == (value, "good"), (table, order, data_type)
    got = {name: readings.latest(name).value for name in tags}
    assert (got["bit0"], got["bit1"], got["bit15"]) == (True, False, True)
    assert (got["nonzero"], got["zero"]) == (True, False)
    assert (got["coil7"], got["coil8"], got["coil9"], got["di301"]) == (True, False, True, True)
    assert got["scaled"] == pytest.approx(-12345 * 0.01 + 1)
    assert all(s.machine == "press-1" and s.ts.tzinfo is not None for s in readings.samples())
    [link] = readings.links()
    assert link.up


async def test_device_byte_order_applies_unless_the_tag_overrides(
    simulator: Start, running: Run
) -> None:
    sim = await simulator()
    await sim.set_value(0, 100_000, "uint32", "CDAB")
    await sim.set_value(2, 100_000, "uint32", "ABCD")
    await sim.set_value(4, 1.5, "float32", "CDAB")
    tags = {
        "device": tag_config("hr:1", type="uint32"),  # 1-based: hr:1 is register 0
        "override": tag_config("hr:3", type="uint32", order="ABCD"),
        "classic": tag_config("40005", type="float32"),
    }
    conn = connector_for(sim, byte_order="CDAB", address_base=1, poll_interval_s=5)
    readings = Readings()
    running(ModbusDevice("m", conn, tags), readings)
    await readings.wait(lambda: len(readings.samples()) == 3)
    assert {s.tag: s.value for s in readings.samples()} == {
        "device": 100_000,
        "override": 100_000,
        "classic": 1.5,
    }


def _layout() -> dict[str, TagConfig]:
    """A realistic map: 300 registers of mixed values, two far-apart inputs, 2,500 coils."""
    tags: dict[str, TagConfig] = {}
    at = 0
    for i in range(60):  # 60 x (uint32 + float32 + int16) = 300 registers, contiguous
        tags[f"count{i}"] = tag_config(f"hr:{at}", type="uint32")
        tags[f"value{i}"] = tag_config(f"hr:{at + 2}", type="float32")
        tags[f"state{i}"] = tag_config(f"hr:{at + 4}", type="int16")
        at += 5
    tags["in_a"] = tag_config("ir:10", type="float32")
    tags["in_b"] = tag_config("ir:200", type="float32")  # far from in_a: its own request
    for i in range(0, 2500, 10):
        tags[f"coil{i}"] = tag_config(f"coil:{i}")
    tags["di_a"] = tag_config("di:0")
    tags["di_b"] = tag_config("di:250")  # 250 bits apart: within max_gap 16 registers
    return tags


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # hr: 300 registers in 125-register requests = 3; ir: 2; coils: 2000 + 500 = 2; di: 1
        ({}, 8),
        # per-device caps: 300/50 = 6 hr requests, coils 2500/1000 = 3
        ({"max_registers": 50, "max_bits": 1000}, 6 + 2 + 3 + 1),
        # no merging at all: one request per tag
        ({"one_request_per_tag": True}, 180 + 2 + 250 + 2),
    ],
)
async def test_requests_per_cycle_are_the_minimum(
    simulator: Start, running: Run, settings: dict[str, Any], expected: int
) -> None:
    sim = await simulator({1: Unit(registers=400, bits=2512)})
    tags = _layout()
    device = ModbusDevice("m", connector_for(sim, poll_interval_s=0.25, **settings), tags)
    assert device.requests_per_cycle == {0.25: expected}
    readings = Readings()
    running(device, readings)
    await readings.wait(lambda: device.counters.cycles >= 3, timeout=10)
    cycles = device.counters.cycles
    assert sim.requests() in (cycles * expected, (cycles + 1) * expected)  # one may be under way
    assert device.counters.requests == sim.requests()
    good = [s for s in readings.samples() if s.quality == "good"]
    assert len(good) == len(readings.samples()) >= cycles * len(tags)
    if not settings:
        first = sim.received[:expected]
        hr = sorted((r.address, r.count) for r in first if r.function_code == 3)
        assert hr == [(0, 125), (125, 125), (250, 50)]


async def test_exception_response_marks_only_the_refused_tags(
    simulator: Start, running: Run
) -> None:
    sim = await simulator({1: Unit(holes=(("hr", 50, 2), ("hr", 90, 5)))})
    await sim.set_value(40, 7, "uint16")
    await sim.set_value(52, 9, "uint16")
    tags = {
        "before": tag_config("hr:40"),
        "refused": tag_config("hr:50"),  # merged with its neighbours, then split out
        "after": tag_config("hr:52"),
        "alone": tag_config("hr:91"),  # a request of its own, refused every cycle
    }
    device = ModbusDevice("m", connector_for(sim), tags)
    assert device.requests_per_cycle == {0.1: 2}
    readings = Readings()
    running(device, readings)
    await readings.wait(lambda: device.counters.cycles >= 3)
    latest = {name: readings.latest(name) for name in tags}
    assert (latest["before"].value, latest["before"].quality) == (7, "good")
    assert (latest["after"].value, latest["after"].quality) == (9, "good")
    for name in ("refused", "alone"):
        assert (latest[name].value, latest[name].quality) == (None, "bad")
        assert latest[name].status == "exception 2 (illegal data address)"
    assert device.counters.splits == 1
    assert [link.up for link in readings.links()] == [True]  # refusals are not a lost link
    # after the split: [40], [50], [52] and [91] every cycle, nothing re-merged
    last = sim.received[-4:]
    assert sorted((r.address, r.count) for r in last) == [(40, 1), (50, 1), (52, 1), (91, 1)]


async def test_reconnects_after_a_server_restart(simulator: Start, running: Run) -> None:
    sim = await simulator()
    await sim.set_value(0, 41, "uint32")
    device = ModbusDevice("m", connector_for(sim), {"good": tag_config("hr:0", type="uint32")})
    readings = Readings()
    running(device, readings)
    await readings.wait(lambda: readings.samples() and readings.latest("good").value == 41)

    await sim.stop()
    await readings.wait(lambda: [link.up for link in readings.links()] == [True, False])
    assert readings.latest("good").quality == "bad"
    await asyncio.sleep(0.5)  # reconnect attempts against a closed port
    await sim.start()
    await sim.set_value(0, 42, "uint32")
    await readings.wait(lambda: readings.latest("good").value == 42)
    assert [link.up for link in readings.links()] == [True, False, True]  # once each way
    assert device.counters.reconnects >= 1


async def test_a_dead_device_does_not_delay_a_live_one(simulator: Start, running: Run) -> None:
    live = await simulator()
    mute = await simulator()
    mute.fault.silent = True  # accepts the connection, never answers
    tags = {"good": tag_config("hr:0", type="uint32"), "state": tag_config("hr:2")}
    fast = ModbusDevice("live", connector_for(live, poll_interval_s=0.1), tags)
    silent = ModbusDevice("mute", connector_for(mute, timeout_s=0.4, retries=1), tags)
    absent = ModbusDevice("absent", connector_for(port=free_port(), timeout_s=0.4), tags)
    readings = {name: Readings() for name in ("live", "mute", "absent")}
    for device in (fast, silent, absent):
        running(device, readings[device.machine])
    await asyncio.sleep(2.0)

    # Waiting on the dead ones would cost the live one 0.4 s (4 cycles) per timeout; what
    # remains is the scheduling noise of a busy machine.
    assert fast.counters.late_cycles <= 1
    assert fast.counters.max_lag_s < 0.25
    assert fast.counters.cycles >= 17  # 20 due in 2 s
    assert all(s.quality == "good" for s in readings["live"].samples())
    [down] = readings["mute"].links()
    assert not down.up and "no answer within 0.4 s" in (down.error or "")
    assert {s.quality for s in readings["mute"].samples()} == {"bad"}
    [refused] = readings["absent"].links()
    assert not refused.up and "cannot connect" in (refused.error or "")
    assert silent.counters.timeouts >= 2 and silent.counters.reconnects >= 1


async def test_an_answer_from_the_wrong_unit_drops_the_connection(
    simulator: Start, running: Run
) -> None:
    sim = await simulator()
    sim.fault.wrong_unit = 7
    device = ModbusDevice("m", connector_for(sim, timeout_s=0.3), {"v": tag_config("hr:0")})
    readings = Readings()
    running(device, readings)
    await readings.wait(lambda: bool(readings.links()))
    [down] = readings.links()
    assert not down.up and "answer from unit 7, expected 1" in (down.error or "")
    assert device.counters.reconnects >= 1  # the retry ran on a fresh connection
    sim.fault.wrong_unit = None
    await readings.wait(lambda: len(readings.links()) == 2)
    assert readings.latest("v").quality == "good"


async def test_a_duplicate_answer_forces_a_fresh_connection(simulator: Start, running: Run) -> None:
    sim = await simulator()
    await sim.set_value(0, 5, "uint16")
    await sim.set_value(1, 6, "uint16")
    sim.fault.duplicate = True
    tags = {"a": tag_config("hr:0"), "b": tag_config("hr:1"), "c": tag_config("ir:0")}
    device = ModbusDevice("m", connector_for(sim, max_gap=0), tags)
    readings = Readings()
    running(device, readings)
    await readings.wait(lambda: device.counters.cycles >= 3)
    assert all(s.quality == "good" for s in readings.samples())
    assert {s.value for s in readings.samples("a")} == {5}
    assert {s.value for s in readings.samples("b")} == {6}
    # every answer came twice: each next request starts on a new connection
    assert device.counters.reconnects >= device.counters.requests - 2
    assert [link.up for link in readings.links()] == [True]


async def test_a_short_answer_is_a_mismatch(simulator: Start, running: Run) -> None:
    sim = await simulator()
    sim.fault.short = True
    tags = {"a": tag_config("hr:0", type="uint32")}
    device = ModbusDevice("m", connector_for(sim, retries=0), tags)
    readings = Readings()
    running(device, readings)
    await readings.wait(lambda: bool(readings.links()))
    [down] = readings.links()
    assert "1 registers in answer, asked 2" in (down.error or "")
    assert readings.latest("a").quality == "bad"


async def test_rtu_framing_over_tcp(simulator: Start, running: Run) -> None:
    sim = await simulator({3: Unit()}, framer="rtu")
    await sim.set_value(10, -7.25, "float64", "DCBA", unit=3)
    await sim.set_bits("coil", 1, [True], unit=3)
    tags = {"v": tag_config("hr:10", type="float64", order="DCBA"), "c": tag_config("coil:1")}
    conn = connector_for(sim, transport="rtu_over_tcp", unit=3)
    readings = Readings()
    running(ModbusDevice("m", conn, tags), readings)
    await readings.wait(lambda: len(readings.samples()) >= 4)
    assert {s.tag: s.value for s in readings.samples()} == {"v": -7.25, "c": True}
    assert sim.requests(unit=3) >= 2


async def test_rtu_on_a_serial_line(simulator: Start, running: Run) -> None:
    async with NullModem() as line:
        # (a pseudo-terminal refuses parity settings once open: the line runs 8N1)
        sim = await simulator({2: Unit()}, serial_port=line.ports[0], baudrate=38400, parity="N")
        await sim.set_value(0, 123_456, "uint32", "CDAB", unit=2)
        await sim.set_value(2, "SER", "string", length=3, unit=2)
        tags = {
            "count": tag_config("hr:0", type="uint32", order="CDAB"),
            "name": tag_config("hr:2", type="string", length=3),
        }
        conn = connector_for(
            transport="rtu",
            unit=2,
            serial={"port": line.ports[1], "baudrate": 38400, "parity": "N"},
        )
        device = ModbusDevice("m", conn, tags)
        readings = Readings()
        task = running(device, readings)
        await readings.wait(lambda: device.counters.cycles >= 3)
        assert {s.tag: s.value for s in readings.samples()} == {"count": 123_456, "name": "SER"}
        assert all(s.quality == "good" for s in readings.samples())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


async def test_units_on_one_serial_line_take_turns(simulator: Start, running: Run) -> None:
    async with NullModem() as line:
        sim = await simulator({1: Unit(), 2: Unit()}, serial_port=line.ports[0], parity="N")
        await sim.set_value(0, 11, "uint16", unit=1)
        await sim.set_value(0, 22, "uint16", unit=2)
        serial = {"port": line.ports[1], "baudrate": 19200, "parity": "N"}
        tags = {"v": tag_config("hr:0")}
        devices = [
            ModbusDevice(f"u{unit}", connector_for(transport="rtu", unit=unit, serial=serial), tags)
            for unit in (1, 2, 3)  # unit 3 is not on the line
        ]
        readings = {d.machine: Readings() for d in devices}
        tasks = [running(d, readings[d.machine]) for d in devices]
        await readings["u1"].wait(lambda: devices[0].counters.cycles >= 5)
        await readings["u3"].wait(lambda: bool(readings["u3"].links()))
        assert {s.value for s in readings["u1"].samples()} == {11}
        assert {s.value for s in readings["u2"].samples()} == {22}
        assert all(s.quality == "good" for s in readings["u2"].samples())
        [down] = readings["u3"].links()
        assert not down.up and "no answer" in (down.error or "")
        # one port, opened once and shared: a lost unit never closed it for the others
        assert [link.up for link in readings["u1"].links()] == [True]

        other = connector_for(transport="rtu", unit=4, serial={**serial, "baudrate": 9600})
        clash = ModbusDevice("clash", other, tags)
        clash_readings = Readings()
        tasks.append(running(clash, clash_readings))
        await clash_readings.wait(lambda: bool(clash_readings.links()))
        assert "configured twice with different settings" in (clash_readings.links()[0].error or "")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sim.stop()


async def test_a_slow_consumer_skips_cycles_and_keeps_the_grid(
    simulator: Start, running: Run
) -> None:
    sim = await simulator()
    stalled = asyncio.Event()

    class Slow(Readings):
        async def __call__(self, batch: Any) -> None:
            await super().__call__(batch)
            if len(self.batches) == 3:
                await asyncio.sleep(0.35)  # about 3.5 intervals lost
                stalled.set()

    device = ModbusDevice("m", connector_for(sim, poll_interval_s=0.1), {"v": tag_config("hr:0")})
    readings = Slow()
    running(device, readings)
    await stalled.wait()
    await readings.wait(lambda: device.counters.cycles >= 8)
    # the cycle due during the stall runs at once (late), the two slots after it are skipped
    assert device.counters.late_cycles >= 2
    assert device.counters.max_lag_s > 0.2
    stamps = [s.ts.timestamp() for s in readings.samples()]
    # before and after the stall the cycles sit on one grid: due times are not reset
    grid = stamps[0]
    on_grid = [round((t - grid) / 0.1, 2) for t in stamps[:3] + stamps[4:]]
    assert all(abs(x - round(x)) < 0.4 for x in on_grid), on_grid
    assert round(on_grid[3]) >= 6  # at least 0.35 s later, the skipped slots left out


async def test_poll_groups_keep_their_own_intervals(simulator: Start, running: Run) -> None:
    sim = await simulator()
    tags = {
        "fast": tag_config("hr:0", poll_interval_s=0.1),
        "slow": tag_config("hr:1", poll_interval_s=0.5),
    }
    device = ModbusDevice("m", connector_for(sim, poll_interval_s=1.0), tags)
    assert device.requests_per_cycle == {0.1: 1, 0.5: 1}
    readings = Readings()
    running(device, readings)
    await asyncio.sleep(1.05)
    assert 7 <= len(readings.samples("fast")) <= 12
    assert 2 <= len(readings.samples("slow")) <= 3


async def test_a_non_finite_float_is_bad_and_the_rest_good(simulator: Start, running: Run) -> None:
    sim = await simulator()
    await sim.set_value(0, math.nan, "float32")
    await sim.set_value(2, 1.0, "float32")
    tags = {"nan": tag_config("hr:0", type="float32"), "one": tag_config("hr:2", type="float32")}
    readings = Readings()
    running(ModbusDevice("m", connector_for(sim), tags), readings)
    await readings.wait(lambda: len(readings.samples()) >= 2)
    assert (readings.latest("nan").quality, readings.latest("nan").status) == (
        "bad",
        "not a finite number",
    )
    assert (readings.latest("one").value, readings.latest("one").quality) == (1.0, "good")


def test_a_device_with_bad_tags_refuses_to_start() -> None:
    with pytest.raises(ValueError, match=r"tags.x.address: 'hr:x' is not a Modbus address"):
        ModbusDevice("m", connector_for(port=502), {"x": tag_config("hr:x")})


# -- report by exception -------------------------------------------------------------------


def _batches(readings: Readings, since: int) -> list[dict[str, Any]]:
    return [
        {r.tag: r.value for r in batch if hasattr(r, "tag")} for batch in readings.batches[since:]
    ]


async def test_reports_what_changed_and_the_counters_every_poll(
    simulator: Start, running: Run
) -> None:
    sim = await simulator()
    await sim.set_value(0, 41, "uint32")
    await sim.set_value(2, 6, "int16")
    await sim.set_value(3, 2.5, "float32", "CDAB")
    await sim.set_value(5, "AB-42", "string", length=5)
    tags = {
        "good": tag_config("hr:0", type="uint32"),
        "state": tag_config("hr:2", type="int16"),
        "temp": tag_config("hr:3", type="float32", order="CDAB"),
        "name": tag_config("hr:5", type="string", length=5),
    }
    device = ModbusDevice("m", connector_for(sim), tags, every_poll={"good"})
    readings = Readings()
    running(device, readings)
    await readings.wait(lambda: device.counters.cycles >= 3)
    first, *rest = _batches(readings, 0)
    assert first == {"good": 41, "state": 6, "temp": 2.5, "name": "AB-42"}
    assert rest and all(batch == {"good": 41} for batch in rest)

    # One word of the float (CDAB: register 3 holds its low half) and then the state.
    seen = len(readings.batches)
    [low, high] = (await sim.set_value(3, 2.75, "float32", "CDAB"))[:2]
    await readings.wait(lambda: any("temp" in b for b in _batches(readings, seen)))
    changed = next(b for b in _batches(readings, seen) if "temp" in b)
    assert changed == {"good": 41, "temp": 2.75}
    assert (low, high) != (0, 0)
    seen = len(readings.batches)
    await sim.set_registers("hr", 2, [2])
    await readings.wait(lambda: any("state" in b for b in _batches(readings, seen)))
    assert next(b for b in _batches(readings, seen) if "state" in b) == {"good": 41, "state": 2}
    assert all(s.quality == "good" for s in readings.samples())


async def test_refused_tags_stay_bad_every_poll_while_the_rest_report_changes(
    simulator: Start, running: Run
) -> None:
    sim = await simulator({1: Unit(holes=(("hr", 50, 2),))})
    await sim.set_value(40, 7, "uint16")
    await sim.set_value(52, 9, "uint16")
    tags = {
        "before": tag_config("hr:40"),
        "refused": tag_config("hr:50"),
        "after": tag_config("hr:52"),
    }
    device = ModbusDevice("m", connector_for(sim), tags, every_poll=())
    readings = Readings()
    running(device, readings)
    await readings.wait(lambda: device.counters.cycles >= 4)
    assert {s.value for s in readings.samples("before")} == {7}
    assert len(readings.samples("before")) == len(readings.samples("after")) == 1
    refused = readings.samples("refused")
    assert len(refused) == device.counters.cycles  # an error is reported at every poll
    assert {(s.quality, s.status) for s in refused} == {
        ("bad", "exception 2 (illegal data address)")
    }


async def test_after_a_lost_link_every_tag_is_reported_again(
    simulator: Start, running: Run
) -> None:
    sim = await simulator()
    await sim.set_value(0, 41, "uint32")
    await sim.set_value(2, 6, "int16")
    tags = {"good": tag_config("hr:0", type="uint32"), "state": tag_config("hr:2", type="int16")}
    device = ModbusDevice("m", connector_for(sim, retries=0), tags, every_poll={"good"})
    readings = Readings()
    running(device, readings)
    await readings.wait(lambda: device.counters.cycles >= 2)
    assert len(readings.samples("state")) == 1

    sim.fault.short = True  # an answer one register short: no answer to trust, link down
    await readings.wait(lambda: [link.up for link in readings.links()] == [True, False])
    assert readings.latest("state").quality == "bad"
    sim.fault.short = False
    await readings.wait(lambda: len(readings.links()) == 3)
    await readings.wait(lambda: readings.latest("state").quality == "good")
    # Unchanged on the device, yet news to the rules after the gap: reported again.
    assert (readings.latest("state").value, readings.latest("good").value) == (6, 41)
    assert [s.quality for s in readings.samples("state")] == ["good", "bad", "good"]
