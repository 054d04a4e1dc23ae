"""`mesgw modbus read` and `mesgw modbus scan` as a process, against a real pymodbus server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from connectors.modbus.testing import ModbusSimulator, Unit
from gateway.cli import main
from gateway.testing import free_port

Start = Callable[..., Awaitable[ModbusSimulator]]


async def mesgw_process(*args: str) -> tuple[int, str, str]:
    """`python -m gateway modbus ...` in its own process: the real entry point."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "modbus",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def mesgw(capsys: pytest.CaptureFixture[str]) -> Callable[..., Awaitable[tuple[int, str, str]]]:
    """`mesgw modbus ...` through `gateway.cli.main` in a thread (it runs its own loop)."""

    async def run(*args: str) -> tuple[int, str, str]:
        def call() -> int:
            try:
                return main(["modbus", *args])
            except SystemExit as exit_:  # argparse's usage errors
                return int(exit_.code or 0)

        code = await asyncio.to_thread(call)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


Mesgw = Callable[..., Awaitable[tuple[int, str, str]]]


async def test_read_prints_raw_registers_and_the_decoded_value(simulator: Start) -> None:
    sim = await simulator()
    await sim.set_value(100, 2_271_215_617, "uint32", "CDAB")
    code, out, err = await mesgw_process(
        "read", sim.address, "--unit", "1", "--hr", "100:2", "--type", "uint32", "--order", "CDAB"
    )
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "hr:100  0x0001  1",
        "hr:101  0x8760  34656",
        "hr:100  uint32 CDAB  2271215617",
    ]


async def test_read_strings_floats_bits_and_one_based_addresses(
    simulator: Start, mesgw: Mesgw
) -> None:
    sim = await simulator({4: Unit()})
    await sim.set_value(9, "LOT-7", "string", "BADC", table="ir", length=5, unit=4)
    await sim.set_value(20, 1.5, "float32", unit=4)
    await sim.set_value(22, -2.25, "float32", unit=4)
    await sim.set_bits("coil", 5, [True, False, True], unit=4)
    target = ("read", f"127.0.0.1:{sim.port}", "--unit", "4")

    code, out, _ = await mesgw(
        *target,
        "--ir",
        "10:3",
        "--base",
        "1",
        "--type",
        "string",
        "--order",
        "BADC",
        "--length",
        "5",
    )
    assert code == 0
    assert out.splitlines()[-1] == "ir:10  string BADC  'LOT-7'"
    code, out, _ = await mesgw(*target, "--hr", "20:4", "--type", "float32")
    assert code == 0
    assert out.splitlines()[-2:] == ["hr:20  float32 ABCD  1.5", "hr:22  float32 ABCD  -2.25"]
    code, out, _ = await mesgw(*target, "--coil", "5:3")
    assert (code, out.splitlines()) == (0, ["coil:5  1", "coil:6  0", "coil:7  1"])


async def test_read_errors_are_clear(simulator: Start, mesgw: Mesgw) -> None:
    sim = await simulator({1: Unit(holes=(("hr", 10, 1),))})
    code, _, err = await mesgw("read", sim.address, "--hr", "10:1")
    assert (code, err.strip()) == (
        1,
        f"mesgw: unit 1 at {sim.address}: exception 2 (illegal data address)",
    )
    code, _, err = await mesgw(
        "read", sim.address, "--unit", "9", "--hr", "0:1", "--timeout", "0.3"
    )
    assert (code, err.strip()) == (1, f"mesgw: unit 9 at {sim.address}: no answer within 0.3 s")
    port = free_port()
    code, _, err = await mesgw("read", f"127.0.0.1:{port}", "--hr", "0:1")
    assert code == 1 and err.startswith(f"mesgw: cannot connect to 127.0.0.1:{port}: ")
    assert "Traceback" not in err
    code, _, err = await mesgw("read", sim.address, "--hr", "0:3", "--type", "uint32")
    assert (code, err.strip()) == (1, "mesgw: 3 registers do not divide into uint32 values")
    code, _, err = await mesgw("read", sim.address, "--hr", "0:126")
    assert code == 1 and "at most 125" in err
    code, _, err = await mesgw("read", sim.address, "--hr", "ten")
    assert code == 2 and "give START:COUNT" in err


async def test_scan_lists_the_units_that_answer(simulator: Start, mesgw: Mesgw) -> None:
    # unit 9 refuses the probe address: an exception response still means it is there
    sim = await simulator({1: Unit(), 5: Unit(), 9: Unit(holes=(("hr", 0, 1),))})
    code, out, err = await mesgw("scan", sim.address, "--units", "1-10", "--timeout", "0.2")
    assert (code, err) == (0, "")
    # One line per distinct answer, the units that read fine first.
    assert out.splitlines() == [
        "ok: units 1, 5",
        "exception 2 (illegal data address): unit 9",
        "3 of 10 unit ids answered",
    ]
    code, _, err = await mesgw("scan", sim.address, "--units", "20,30", "--timeout", "0.2")
    assert (code, err.strip()) == (1, f"mesgw: no unit answered at {sim.address} (2 tried)")


async def test_read_takes_the_address_as_the_config_writes_it(
    simulator: Start, mesgw: Mesgw
) -> None:
    sim = await simulator()
    await sim.set_value(100, 2_271_215_617, "uint32", "CDAB")
    await sim.set_value(14, 0b1010, "uint16")
    code, out, err = await mesgw(
        "read", sim.address, "hr:100", "--type", "uint32", "--order", "CDAB"
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "hr:100  uint32 CDAB  2271215617"  # 2 registers for uint32
    code, out, _ = await mesgw("read", sim.address, "40101", "--type", "uint32", "--order", "CDAB")
    assert (code, out.splitlines()[0]) == (0, "hr:100  0x0001  1")  # classic: 1-based
    code, out, _ = await mesgw("read", sim.address, "hr:15", "--base", "1")
    assert (code, out.splitlines()) == (0, ["hr:15  0x000a  10"])  # hr:15 at base 1 = wire 14
    code, out, _ = await mesgw("read", sim.address, "hr:14.3")
    assert (code, out.splitlines()) == (0, ["hr:14  0x000a  10", "hr:14.3  bit 3  1"])
    code, out, _ = await mesgw("read", sim.address, "hr:14.2")
    assert out.splitlines()[-1] == "hr:14.2  bit 2  0"
    code, out, _ = await mesgw("read", sim.address, "hr:100", "--count", "3")
    assert (code, len(out.splitlines())) == (0, 3)
    code, _, err = await mesgw("read", sim.address, "xr:1")
    assert code == 1 and "unknown table 'xr'" in err
    code, _, err = await mesgw("read", sim.address)
    assert code == 1 and "give ADDRESS" in err
    code, _, err = await mesgw("read", sim.address, "hr:1", "--hr", "1:1")
    assert code == 1 and "give ADDRESS" in err
