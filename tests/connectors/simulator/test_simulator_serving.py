"""The line serves what it claims: every tag of the generated gateway config, read with plain
asyncua / pymodbus clients (and the Modbus codec), equals the machine's value."""

from __future__ import annotations

import math
from typing import Any

import pytest
from asyncua import ua
from asyncua.ua.uaerrors import BadNotWritable, BadUserAccessDenied

from connectors.simulator import SimulatedLine
from connectors.simulator.layout import opcua_tags
from connectors.simulator.states import OPC30060, PACKTAGS

# Values whose bytes all differ, so any byte or word order mistake shows.
ODD = {16: 0x1A2B, 32: 0x1A2B3C4D, 64: 0x1A2B3C4D5E6F7081}


def machines() -> list[dict[str, Any]]:
    return [
        {
            "id": "opc-a",
            "protocol": "opcua",
            "states": "opc30060",
            "order": "WO-4711",
            "counters": {"good": {"width": 16}, "reject": {"width": 64}, "total": {"width": 32}},
        },
        {
            "id": "opc-b",
            "protocol": "opcua",
            "counters": {"total": {"modulus": 1_000_000}, "reject": {"modulus": 10_000}},
        },
        {"id": "mb-abcd", "protocol": "modbus", "unit": 1, "byte_order": "ABCD"},
        {
            "id": "mb-cdab",
            "protocol": "modbus",
            "unit": 1,
            "base": 100,
            "byte_order": "CDAB",
            "counters": {"good": {"width": 64}, "reject": {"width": 16}},
        },
        {
            "id": "mb-badc",
            "protocol": "modbus",
            "unit": 7,
            "byte_order": "BADC",
            "order_length": 11,
            "counters": {"good": {"width": 32}, "total": {"modulus": 100_000}},
        },
        {
            "id": "mb-dcba",
            "protocol": "modbus",
            "port": 0,
            "unit": 3,
            "base": 2000,
            "byte_order": "DCBA",
            "states": "opc30060",
            "counters": {"good": {"width": 32}, "reject": {"width": 32}, "total": {"width": 32}},
        },
    ]


async def give_values(line: SimulatedLine) -> None:
    """Odd counter values, an order, and a fault with a reason on every machine."""
    for machine in line.machines.values():
        for name, counter in machine.spec.counters.items():
            value = ODD[counter.width] if counter.width else counter.wrap_at - 2
            await machine.set_counter(name, value)
        await machine.set_order("WO-0815" if machine.spec.order_length > 8 else "X")
    await line.machines["opc-a"].set_state("faulted", "aborted", reason=42)
    await line.machines["mb-cdab"].set_state("stopped", "held", reason=7)
    await line.machines["mb-dcba"].set_state("faulted", "aborted", reason=65000 // 3)
    await line.machines["mb-abcd"].set_state("running", "execute", cycle_s=0.75)


def same(served: object, expected: object) -> bool:
    if isinstance(expected, float):
        return isinstance(served, float) and math.isclose(served, expected, rel_tol=1e-6)
    return type(served) is type(expected) and served == expected


async def test_every_generated_tag_reads_back_the_machine_value(probe: Any) -> None:
    config = probe.line_config(*machines())
    async with SimulatedLine(config) as line:
        await give_values(line)
        checked = 0
        for entry in line.gateway_machines():
            machine = line.machines[entry["id"]]
            expected = machine.values()
            endpoint = line.endpoints[entry["id"]]
            if endpoint.protocol == "opcua":
                assert entry["connector"]["endpoint"] == endpoint.url
                async with probe.opcua_client(endpoint.url) as client:
                    for name, tag in entry["tags"].items():
                        served = (await probe.read_opcua(client, tag["address"])).Value.Value
                        assert same(served, expected[name]), (entry["id"], name, served)
                        checked += 1
            else:
                connector = entry["connector"]
                assert (connector["port"], connector["unit"]) == (endpoint.port, endpoint.unit)
                async with probe.modbus_client(endpoint.host, endpoint.port) as client:
                    for name, tag in entry["tags"].items():
                        served = await probe.read_modbus(client, endpoint.unit, tag)
                        assert same(served, expected[name]), (entry["id"], name, served)
                        checked += 1
        assert checked == sum(len(e["tags"]) for e in line.gateway_machines())

    opc_a = line.machines["opc-a"].values()
    assert (opc_a["good"], opc_a["reject"], opc_a["total"]) == (ODD[16], ODD[64], ODD[32])
    assert (opc_a["state"], opc_a["reason"]) == (OPC30060["aborted"], 42)
    assert line.machines["mb-cdab"].values()["state"] == PACKTAGS["held"]
    assert line.machines["mb-abcd"].values()["speed"] == 80.0
    # Machines without a port of their own share one server; the one with port 0 has its own.
    ports = {m: e.port for m, e in line.endpoints.items()}
    assert ports["mb-abcd"] == ports["mb-cdab"] == ports["mb-badc"] != ports["mb-dcba"]
    assert ports["opc-a"] == ports["opc-b"]


async def test_opcua_variables_have_the_counter_width_type_and_change_timestamps(
    probe: Any,
) -> None:
    config = probe.line_config(*machines()[:2])
    async with SimulatedLine(config) as line:
        url = line.endpoints["opc-a"].url
        entry = line.gateway_machines()[0]
        async with probe.opcua_client(url) as client:
            for tag in opcua_tags(line.config.machines[0]):
                value = await probe.read_opcua(client, entry["tags"][tag.name]["address"])
                assert value.Value.VariantType == getattr(ua.VariantType, tag.variant), tag
            before = await probe.read_opcua(client, entry["tags"]["state"]["address"])
            await line.machines["opc-a"].make_part(reject=False)
            state = await probe.read_opcua(client, entry["tags"]["state"]["address"])
            good = await probe.read_opcua(client, entry["tags"]["good"]["address"])
            # A part moves the counters, not the state: its timestamp stays at its change.
            assert state.SourceTimestamp == before.SourceTimestamp
            assert good.SourceTimestamp > before.SourceTimestamp
            assert good.Value.Value == 1
            node = entry["tags"]["good"]["address"]
            uri, _, ident = node.removeprefix("nsu=").partition(";s=")
            index = await client.get_namespace_index(uri)
            with pytest.raises((BadNotWritable, BadUserAccessDenied)):
                await client.get_node(f"ns={index};s={ident}").write_value(
                    ua.Variant(5, ua.VariantType.UInt16)
                )


async def test_modbus_tags_are_read_only_and_unknown_units_are_refused(probe: Any) -> None:
    config = probe.line_config(machines()[2])
    async with SimulatedLine(config) as line:
        endpoint = line.endpoints["mb-abcd"]
        async with probe.modbus_client(endpoint.host, endpoint.port) as client:
            assert (await client.write_register(0, 5, device_id=1)).isError()
            assert (await client.write_coil(0, True, device_id=1)).isError()
            assert (await client.read_holding_registers(0, count=2, device_id=9)).isError()
            # Beyond the machine's registers is not a valid address either.
            assert (await client.read_holding_registers(40, count=1, device_id=1)).isError()
            good = await client.read_holding_registers(0, count=2, device_id=1)
            assert good.registers == [0, 0]
