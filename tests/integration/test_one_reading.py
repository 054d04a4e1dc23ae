"""One reading is one instant, through the real connectors (issue 9, item 3).

The PLC makes the last part of WO-1 and shows WO-2 in the same scan; the gateway sees both
in one reading. That part is WO-1's whatever the protocol and whatever order the tags come
in: Modbus with the order string below or above a word-swapped (CDAB) counter in one
response, OPC UA with the two changes in one notification, either one written first. A
real pymodbus or asyncua server holds the values; the connector `mesgw run` builds
(`gateway.sources.connector_for`) reads them and the rules take each batch as the daemon's
pipeline does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.common.node import Node

from common.net import free_port
from common.sample import Reading, Sample
from connectors.modbus.codec import encode
from connectors.modbus.testing import ModbusSimulator
from gateway.config import load_config
from gateway.sources import connector_for
from rules.engine import Engine

pytestmark = pytest.mark.integration

RULES = """
[rules]
count_interval_s = 60
min_state_s = 0
changeover = false

[state_tables.codes]
codes = { "1" = "running", "2" = "down" }
"""

MACHINE = """
[[machines]]
id = "m1"
area = "a"
line = "l"
ideal_cycle_time_s = 0.001
state_table = "codes"
"""


class Line:
    """The rules fed by one machine's connector, batch by batch as the pipeline feeds them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.drafts: list[Any] = []
        self.seen: list[Sample] = []
        self._changed = asyncio.Event()

    async def __call__(self, batch: Sequence[Reading]) -> None:
        self.seen.extend(r for r in batch if isinstance(r, Sample))
        self.drafts.extend(self.engine.feed_many(batch))
        self._changed.set()

    async def until(self, check: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(10):
                while not check():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    def has_good(self, value: int) -> bool:
        return any(s.tag == "good" and s.value == value for s in self.seen)

    def order_started(self, order: str) -> bool:
        return any(d.type == "order.started" and d.order == order for d in self.drafts)

    def parts(self) -> dict[str | None, int]:
        made: dict[str | None, int] = {}
        for d in self.drafts:
            if d.type == "count":
                made[d.order] = made.get(d.order, 0) + d.data.good
        return {order: n for order, n in made.items() if n}


@contextlib.asynccontextmanager
async def watching(config: str, tmp: Path) -> AsyncIterator[Line]:
    path = tmp / "gateway.toml"
    path.write_text(RULES + config)
    settings = load_config(path)
    line = Line(Engine.from_settings(settings))
    connector = connector_for(settings.machines[0])
    assert connector is not None
    task = asyncio.create_task(connector.run(line))
    try:
        yield line
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# Where the tags sit in the Modbus device's memory: (order string, counter) addresses.
MODBUS_LAYOUTS = {"order string first": (0, 10), "counter first": (10, 0)}


@pytest.mark.parametrize("layout", MODBUS_LAYOUTS)
async def test_modbus_part_in_the_scan_of_an_order_switch_is_the_old_orders(
    layout: str, tmp_path: Path
) -> None:
    order_at, good_at = MODBUS_LAYOUTS[layout]
    tags = {
        "order": f'role = "order"\naddress = "hr:{order_at}"\ntype = "string"\nlength = 8',
        "good": f'role = "good_count"\naddress = "hr:{good_at}"\ntype = "uint32"\nwidth = 32',
        "state": 'role = "state"\naddress = "hr:20"\ntype = "uint16"',
    }
    names = ["order", "good", "state"] if order_at < good_at else ["good", "order", "state"]
    async with ModbusSimulator() as sim:
        config = MACHINE + (
            "[machines.connector]\n"
            f'type = "modbus"\nhost = "127.0.0.1"\nport = {sim.port}\n'
            'byte_order = "CDAB"\npoll_interval_s = 0.05\n'
        )
        config += "".join(f"[machines.tags.{n}]\n{tags[n]}\n" for n in names)

        async def scan(order: str, good: int) -> None:
            """One PLC scan: the order string, the counter and the state in one write."""
            memory = [0] * 21
            memory[order_at : order_at + 4] = encode(order, "string", "CDAB", 8)
            memory[good_at : good_at + 2] = encode(good, "uint32", "CDAB", None)
            memory[20] = 1
            await sim.set_registers("hr", 0, memory)

        await scan("WO-1", 100)
        async with watching(config, tmp_path) as line:
            await walk(line, scan)


async def walk(line: Line, scan: Callable[[str, int], Awaitable[None]]) -> None:
    """Five parts of WO-1, the sixth in the scan that shows WO-2, then two of WO-2."""
    await line.until(lambda: line.order_started("WO-1"), "the first reading")
    for good in range(101, 106):
        await scan("WO-1", good)
        await line.until(lambda g=good: line.has_good(g), f"good = {good}")
    await scan("WO-2", 106)
    await line.until(lambda: line.order_started("WO-2"), "the order switch")
    switch = [s for s in line.seen if s.tag in ("good", "order") and s.ts == _ts_of(line, 106)]
    assert {s.tag for s in switch} == {"good", "order"}, "the switch was not one reading"
    for good in (107, 108):
        await scan("WO-2", good)
        await line.until(lambda g=good: line.has_good(g), f"good = {good}")
    line.drafts.extend(line.engine.flush())
    assert line.parts() == {"WO-1": 6, "WO-2": 2}


def _ts_of(line: Line, good: int) -> datetime:
    return next(s.ts for s in line.seen if s.tag == "good" and s.value == good)


class PlcServer:
    """An asyncua server with a PLC's order, counter and state variables."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = Server()
        self.nodes: dict[str, Node] = {}
        self.types = {
            "Order": ua.VariantType.String,
            "Good": ua.VariantType.UInt32,
            "State": ua.VariantType.Int32,
        }

    async def __aenter__(self) -> PlcServer:
        await self.server.init()
        self.server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/")
        self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await self.server.register_namespace("urn:test:plc")
        plc = await self.server.nodes.objects.add_object(ua.NodeId("Plc", idx), "Plc")
        initial = {"Order": "WO-1", "Good": 100, "State": 1}
        for name, kind in self.types.items():
            node_id = ua.NodeId(f"Plc.{name}", idx)
            value = ua.Variant(initial[name], kind)
            self.nodes[name] = await plc.add_variable(node_id, name, value)
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()

    async def write(self, values: dict[str, Any]) -> None:
        """One PLC scan: every value with the scan's source timestamp, in the order given."""
        now = datetime.now(UTC)
        for name, value in values.items():
            dv = ua.DataValue(ua.Variant(value, self.types[name]), SourceTimestamp=now)
            await self.nodes[name].write_value(dv)


@pytest.mark.parametrize("first", ["order", "counter"])
async def test_opcua_part_in_the_notification_of_an_order_switch_is_the_old_orders(
    first: str, tmp_path: Path
) -> None:
    async with PlcServer() as plc:
        config = MACHINE + (
            "[machines.connector]\n"
            f'type = "opcua"\nendpoint = "opc.tcp://127.0.0.1:{plc.port}/"\n'
            'security_policy = "None"\npublishing_interval_s = 0.05\n'
            "sampling_interval_s = 0\n"
        )
        for tag, var, extra in (
            ("order", "Order", 'role = "order"'),
            ("good", "Good", 'role = "good_count"\nwidth = 32'),
            ("state", "State", 'role = "state"'),
        ):
            config += f'[machines.tags.{tag}]\naddress = "nsu=urn:test:plc;s=Plc.{var}"\n{extra}\n'

        async def scan(order: str, good: int) -> None:
            """One PLC scan; on a switch the order and the counter change together."""
            switch = order != await plc.nodes["Order"].read_value()
            if not switch:
                await plc.write({"Good": good})
            elif first == "order":
                await plc.write({"Order": order, "Good": good})
            else:
                await plc.write({"Good": good, "Order": order})

        async with watching(config, tmp_path) as line:
            await walk(line, scan)
