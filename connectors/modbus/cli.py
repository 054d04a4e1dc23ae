"""`mesgw modbus …`: read registers or bits from a device, find the unit ids on a line."""

from __future__ import annotations

import argparse
import asyncio
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pymodbus.exceptions import ModbusException

from common.errors import GatewayError
from connectors.modbus.address import BIT_TABLES, Table, parse_address
from connectors.modbus.codec import ORDERS, CodecError, decode, register_count
from connectors.modbus.config import ModbusConnector
from connectors.modbus.link import Client, exception_text, library_listener, make_client, where

_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string")
_METHODS = {
    "hr": "read_holding_registers",
    "ir": "read_input_registers",
    "coil": "read_coils",
    "di": "read_discrete_inputs",
}
_MAX = {"hr": 125, "ir": 125, "coil": 2000, "di": 2000}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `modbus` command group to mesgw's command line."""
    modbus = sub.add_parser("modbus", help="Modbus: read registers, scan for unit ids")
    group = modbus.add_subparsers(dest="modbus_command", required=True)

    read = group.add_parser(
        "read",
        help="read registers or bits and print them, raw and decoded",
        description="Read COUNT registers (or bits) from START and print each one; with "
        "--type, also the values they hold. Example: mesgw modbus read 10.0.1.21:502 "
        "--unit 1 --hr 100:2 --type uint32 --order CDAB",
    )
    _target(read)
    read.add_argument(
        "address",
        nargs="?",
        help="where to read, as in the config: hr:100, ir:5, coil:3, di:7, hr:100.3, 40101 "
        "(counted from --base like address_base); or --hr/--ir/--coil/--di START:COUNT",
    )
    read.add_argument(
        "--count",
        type=int,
        help="with ADDRESS: registers or bits to read (default: what --type needs, else 1)",
    )
    table = read.add_mutually_exclusive_group()
    for name, what in (
        ("hr", "holding registers"),
        ("ir", "input registers"),
        ("coil", "coils"),
        ("di", "discrete inputs"),
    ):
        table.add_argument(
            f"--{name}",
            metavar="START:COUNT",
            type=_span,
            help=f"{what}: COUNT {'bits' if name in BIT_TABLES else 'registers'} from START",
        )
    read.add_argument("--type", choices=_TYPES, help="decode the registers as this type")
    read.add_argument("--order", choices=ORDERS, default="ABCD", help="byte order (ABCD)")
    read.add_argument("--length", type=int, help="string length in bytes (default: all)")
    read.set_defaults(func=cmd_read)

    scan = group.add_parser(
        "scan",
        help="list the unit ids that answer",
        description="Send one read to every unit id in --units and list those that answer; "
        "an exception response counts as an answer. (Many TCP devices answer any unit id.)",
    )
    _target(scan, timeout=0.3)
    scan.add_argument("--units", type=_units, default=list(range(1, 248)), help="e.g. 1-247, 1,5,9")
    scan.add_argument("--probe", default="hr:0", help="what to read from each unit (default hr:0)")
    scan.set_defaults(func=cmd_scan)


def _target(p: argparse.ArgumentParser, *, timeout: float = 2.0) -> None:
    p.add_argument("target", help="HOST[:PORT] (port 502), or a serial port such as /dev/ttyUSB0")
    p.add_argument("--unit", type=int, default=1, help="unit (slave) id (default 1)")
    p.add_argument(
        "--rtu-over-tcp", action="store_true", help="RTU frames over TCP (serial gateways)"
    )
    p.add_argument(
        "--base", type=int, choices=(0, 1), default=0, help="address base of START (default 0)"
    )
    p.add_argument("--timeout", type=float, default=timeout, help=f"seconds (default {timeout})")
    s = p.add_argument_group("serial line (a serial port target)")
    s.add_argument("--baudrate", type=int, default=19200)
    s.add_argument("--parity", choices=("N", "E", "O"), default="E")
    s.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    s.add_argument("--bytesize", type=int, choices=(7, 8), default=8)


def _span(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if not m or int(m[2]) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give START:COUNT, e.g. 100:2")
    return int(m[1]), int(m[2])


def _units(text: str) -> list[int]:
    units: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if not m:
            raise argparse.ArgumentTypeError(f"{text!r}: give unit ids like 1-247 or 1,5,9")
        first, last = int(m[1]), int(m[2] or m[1])
        if not 0 <= first <= last <= 255:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: unit ids are 0..255")
        units += range(first, last + 1)
    return units


def _connector(args: argparse.Namespace, unit: int) -> ModbusConnector:
    target: str = args.target
    spec: dict[str, Any] = {"type": "modbus", "unit": unit, "timeout_s": args.timeout}
    if target.startswith(("/", "COM")):
        spec["transport"] = "rtu"
        spec["serial"] = {
            "port": target,
            "baudrate": args.baudrate,
            "parity": args.parity,
            "stopbits": args.stopbits,
            "bytesize": args.bytesize,
        }
    else:
        host, port = target, "502"
        if target.startswith("["):  # [IPv6]:port
            host, _, rest = target[1:].partition("]")
            port = rest.removeprefix(":") or port
        elif target.count(":") == 1:
            host, _, port = target.partition(":")
        spec["host"] = host
        spec["port"] = port
        spec["transport"] = "rtu_over_tcp" if args.rtu_over_tcp else "tcp"
    try:
        return ModbusConnector.model_validate(spec)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'target'}: {e['msg']}" for e in err.errors()
        )
        raise GatewayError(f"{target}: {problems}") from err


@dataclass
class _Session:
    """One connection for the command, with pymodbus' complaints kept as the reason."""

    connector: ModbusConnector
    client: Client | None = None
    note: str | None = None

    def library_line(self, level: int, message: str) -> None:
        self.note = message.removeprefix("Failed to connect ").strip()

    async def open(self) -> None:
        self.close()
        library_listener.set(self)
        self.client = make_client(self.connector)
        if not await self.client.connect():
            self.close()
            reason = self.note or "no connection"
            raise GatewayError(f"cannot connect to {where(self.connector)}: {reason}")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    async def read(self, table: Table, start: int, count: int, unit: int) -> Any:
        """The answer (maybe an exception response), or None if the unit did not answer."""
        if self.client is None or not self.client.connected:
            await self.open()
        assert self.client is not None
        try:
            return await getattr(self.client, _METHODS[table])(start, count=count, device_id=unit)
        except ModbusException:
            self.close()  # a late answer must not be taken for the next request
            return None


def cmd_read(args: argparse.Namespace) -> int:
    given = [t for t in ("hr", "ir", "coil", "di") if getattr(args, t) is not None]
    if (args.address is None) == (not given):
        raise GatewayError("give ADDRESS (hr:100, 40101, ...) or one of --hr/--ir/--coil/--di")
    bit = None
    if args.address is not None:
        try:
            parsed = parse_address(args.address, args.base)
        except ValueError as err:
            raise GatewayError(str(err)) from err
        table: Table = parsed.table
        wire, bit = parsed.index, parsed.bit
        start = wire + args.base
        if args.count is not None:
            count = args.count
        elif args.type is not None and table not in BIT_TABLES and bit is None:
            count = (
                register_count("string", args.length or 2)
                if args.type == "string"
                else register_count(args.type)
            )
        else:
            count = 1
    else:
        table = given[0]  # type: ignore[assignment]
        start, count = getattr(args, table)
        try:
            wire = parse_address(f"{table}:{start}", args.base).index
        except ValueError as err:
            raise GatewayError(str(err)) from err
    if count > _MAX[table] or wire + count - 1 > 65535:
        raise GatewayError(f"one request reads at most {_MAX[table]} from {table}:{start}")
    if table in BIT_TABLES and args.type not in (None, "bool"):
        raise GatewayError(f"{table} holds bits; --type does not apply")
    lines = asyncio.run(_read(args, table, wire, count))
    if bit is not None:
        register = int(lines[0].split()[-1])
        lines.append(f"{table}:{start}.{bit}  bit {bit}  {(register >> bit) & 1}")
    for line in lines:
        print(line)
    return 0


async def _read(args: argparse.Namespace, table: Table, wire: int, count: int) -> list[str]:
    session = _Session(_connector(args, args.unit))
    try:
        answer = await session.read(table, wire, count, args.unit)
    finally:
        session.close()
    target = where(session.connector)
    if answer is None:
        raise GatewayError(f"unit {args.unit} at {target}: no answer within {args.timeout:g} s")
    if answer.isError():
        raise GatewayError(f"unit {args.unit} at {target}: {exception_text(answer.exception_code)}")
    first = wire + args.base
    if table in BIT_TABLES:
        return [f"{table}:{first + i}  {int(b)}" for i, b in enumerate(answer.bits[:count])]
    registers: list[int] = answer.registers
    lines = [f"{table}:{first + i}  0x{r:04x}  {r}" for i, r in enumerate(registers)]
    if args.type is not None and args.type != "uint16":
        lines += _decoded(table, first, registers, args.type, args.order, args.length)
    return lines


def _decoded(
    table: str, first: int, registers: list[int], data_type: str, order: str, length: int | None
) -> list[str]:
    if data_type == "string":
        length = length or len(registers) * 2
        size = register_count("string", length)
    else:
        size = register_count(data_type)
    if len(registers) % size:
        raise GatewayError(f"{len(registers)} registers do not divide into {data_type} values")
    lines = []
    for at in range(0, len(registers), size):
        try:
            value = decode(registers[at : at + size], data_type, order, length)
        except CodecError as err:
            raise GatewayError(str(err)) from err
        lines.append(f"{table}:{first + at}  {data_type} {order}  {value!r}")
    return lines


def cmd_scan(args: argparse.Namespace) -> int:
    try:
        probe = parse_address(args.probe, args.base)
    except ValueError as err:
        raise GatewayError(f"--probe: {err}") from err
    found = asyncio.run(_scan(args, probe.table, probe.index))
    if not found:
        raise GatewayError(f"no unit answered at {args.target} ({len(args.units)} tried)")
    # One line per distinct answer, the units that read fine first: a gateway answering
    # "exception 11" for 240 absent units is one line, not 240.
    answers: dict[str, list[int]] = {}
    for unit, what in found:
        answers.setdefault(what, []).append(unit)
    for what in sorted(answers, key=lambda w: (w != "ok", min(answers[w]))):
        units = answers[what]
        print(f"{what}: {'unit' if len(units) == 1 else 'units'} {_ranges(units)}")
    print(f"{len(found)} of {len(args.units)} unit ids answered")
    return 0


def _ranges(units: list[int]) -> str:
    """`1-5, 9, 11-12` for [1, 2, 3, 4, 5, 9, 11, 12]."""
    parts: list[str] = []
    run: list[int] = []
    for unit in sorted(units):
        if run and unit == run[-1] + 1:
            run.append(unit)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [unit]
    parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(parts)


async def _scan(args: argparse.Namespace, table: Table, index: int) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    session = _Session(_connector(args, args.units[0] or 1))
    try:
        for unit in args.units:
            answer = await session.read(table, index, 1, unit)
            if answer is None:
                continue
            what = exception_text(answer.exception_code) if answer.isError() else "ok"
            found.append((unit, what))
    finally:
        session.close()
    return found
