"""Where each machine's tags live: OPC UA node ids and the Modbus register map.

The servers and the generated gateway configuration both read this module, so what the line
serves and what the gateway is told to read cannot drift apart.

Modbus, relative to the machine's `base` (the same offset in all four tables):

| table | offset | tag | type |
|---|---|---|---|
| hr | 0 / 4 / 8 | good / reject / total counter | uint16, uint32 or uint64 by width |
| hr | 12 | state | int16 |
| hr | 13 | reason | uint16 |
| hr | 14 | status word: bit 0 running, 1 faulted, 2 stopped, 3 idle | uint16, never reordered |
| hr | 16 | order | string of `order_length` bytes |
| ir | 0 | speed (parts per minute) | float32 |
| coil | 0 / 1 / 2 | stack light green / amber / red | bool |
| di | 0 / 1 / 2 | running / faulted / stopped | bool |

Every register value except the status word is written in the machine's byte order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

Table = Literal["hr", "ir", "coil", "di"]
CounterName = Literal["good", "reject", "total"]


class _Counter(Protocol):
    @property
    def data_type(self) -> str: ...


class MachineLayout(Protocol):
    """What the layout needs of a simulated machine (`config.MachineSpec` is one): the
    config imports this module, so it names no config type itself."""

    @property
    def counters(self) -> Mapping[CounterName, _Counter]: ...

    @property
    def order_length(self) -> int: ...


HR_COUNTER: Final = {"good": 0, "reject": 4, "total": 8}
HR_STATE: Final = 12
HR_REASON: Final = 13
HR_STATUS: Final = 14
HR_ORDER: Final = 16
IR_SPEED: Final = 0
STATUS_BITS: Final = {"running": 0, "faulted": 1, "stopped": 2, "idle": 3}
COILS: Final = {"lamp_green": 0, "lamp_amber": 1, "lamp_red": 2}
DISCRETE_INPUTS: Final = {"running": 0, "faulted": 1, "stopped": 2}
IR_SPAN: Final = 2
BIT_SPAN: Final = 3

COUNTER_ROLES: Final = {"good": "good_count", "reject": "reject_count", "total": "total_count"}


def modbus_span(order_length: int) -> int:
    """Holding registers one machine occupies from its base."""
    return HR_ORDER + (order_length + 1) // 2


@dataclass(frozen=True, slots=True)
class ModbusTag:
    """One value in the register map; `export` puts it in the generated gateway config."""

    name: str
    role: str
    table: Table
    offset: int
    data_type: str
    bit: int | None = None
    length: int | None = None
    ordered: bool = True
    export: bool = True


def modbus_tags(spec: MachineLayout) -> list[ModbusTag]:
    """The machine's register map (see the module docstring)."""
    tags = [
        ModbusTag(name, COUNTER_ROLES[name], "hr", HR_COUNTER[name], counter.data_type)
        for name, counter in sorted(spec.counters.items(), key=lambda kv: HR_COUNTER[kv[0]])
    ]
    tags += [
        ModbusTag("state", "state", "hr", HR_STATE, "int16"),
        ModbusTag("reason", "reason", "hr", HR_REASON, "uint16"),
        ModbusTag("status", "value", "hr", HR_STATUS, "uint16", ordered=False, export=False),
        ModbusTag("order", "order", "hr", HR_ORDER, "string", length=spec.order_length),
        ModbusTag("speed", "speed", "ir", IR_SPEED, "float32"),
        ModbusTag(
            "faulted", "value", "hr", HR_STATUS, "bool", bit=STATUS_BITS["faulted"], ordered=False
        ),
    ]
    tags += [
        ModbusTag(name, "value", "coil", offset, "bool", export=name == "lamp_red")
        for name, offset in COILS.items()
    ]
    tags += [
        ModbusTag(name, "value", "di", offset, "bool", export=name == "running")
        for name, offset in DISCRETE_INPUTS.items()
    ]
    return tags


def modbus_address(tag: ModbusTag, base: int) -> str:
    """The gateway's address syntax: `hr:100`, `coil:3`, `hr:114.1`."""
    address = f"{tag.table}:{base + tag.offset}"
    return address if tag.bit is None else f"{address}.{tag.bit}"


OpcUaType = Literal["UInt16", "UInt32", "UInt64", "Int32", "String", "Double", "Boolean"]


@dataclass(frozen=True, slots=True)
class OpcUaTag:
    """One variable under the machine's object."""

    name: str
    role: str
    variant: OpcUaType


_COUNTER_VARIANTS: Final[dict[str, OpcUaType]] = {
    "uint16": "UInt16",
    "uint32": "UInt32",
    "uint64": "UInt64",
}


def opcua_tags(spec: MachineLayout) -> list[OpcUaTag]:
    """The variables of the machine's object: counters, state, reason, order, speed, running."""
    tags = [
        OpcUaTag(name, COUNTER_ROLES[name], _COUNTER_VARIANTS[counter.data_type])
        for name, counter in sorted(spec.counters.items(), key=lambda kv: HR_COUNTER[kv[0]])
    ]
    return [
        *tags,
        OpcUaTag("state", "state", "Int32"),
        OpcUaTag("reason", "reason", "Int32"),
        OpcUaTag("order", "order", "String"),
        OpcUaTag("speed", "speed", "Double"),
        OpcUaTag("running", "value", "Boolean"),
    ]


def node_id(namespace: str, machine: str, tag: str | None = None) -> str:
    """`nsu=<namespace>;s=<machine>.<tag>`, or the machine's object without a tag."""
    name = machine if tag is None else f"{machine}.{tag}"
    return f"nsu={namespace};s={name}"
