"""The Modbus workloads of `make bench`: what each device holds, and how each client reads it.

Every device has `registers` holding registers from 0: a good and a reject counter (uint32),
the PackML state (int16, PackTags numbers), then float32 values (half word-swapped, CDAB)
and int16 values, so that there are 62 typed tags per 100 registers, as in the plant the
issue was measured on. The same layout drives the device farm (what changes, and how), the
gateway's configuration (one machine per device, every register mapped to a typed tag) and
Node-RED's flow (the raw registers, read in requests of at most 125).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_REGISTERS = 125
TAGS_PER_100 = 62
EXECUTE = 6  # PackTags: running
# How the farm's values move, per device and second: a good part every second, a reject
# every 20 s, and this share of the analog values (the rest hold still, as most do).
CHANGING_VALUES = 0.05
REJECT_EVERY_S = 20


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    register: int
    type: str  # uint32, float32, int16
    order: str
    role: str

    @property
    def size(self) -> int:
        return 1 if self.type == "int16" else 2


@dataclass(frozen=True)
class Workload:
    devices: int
    registers: int
    interval_s: float

    @property
    def name(self) -> str:
        every = (
            f"{self.interval_s:g} s" if self.interval_s >= 1 else f"{self.interval_s * 1000:g} ms"
        )
        return f"modbus {self.devices} dev x {self.registers} regs @{every}"

    @property
    def key(self) -> str:
        return f"{self.devices}x{self.registers}@{self.interval_s:g}"

    @property
    def minimum_requests(self) -> int:
        """Requests per device and cycle no client can go below (125 registers a read)."""
        return math.ceil(self.registers / MAX_REGISTERS)

    @property
    def cycles_per_s(self) -> float:
        return self.devices / self.interval_s


WORKLOADS = (
    Workload(100, 100, 1.0),
    Workload(500, 30, 1.0),
    Workload(20, 500, 0.1),
)


def layout(registers: int) -> list[Tag]:
    """The typed tags of one device: two counters and a state, then floats and int16s."""
    tags = [
        Tag("good", 0, "uint32", "ABCD", "good_count"),
        Tag("reject", 2, "uint32", "ABCD", "reject_count"),
        Tag("state", 4, "int16", "ABCD", "state"),
    ]
    rest = registers - 5
    values = round(registers * TAGS_PER_100 / 100) - len(tags)
    floats = rest - values  # 2 f + i = rest, f + i = values
    ints = values - floats
    at = 5
    f = i = 0
    # Interleaved, so that every response holds both kinds and both byte orders; no value
    # straddles a 125-register boundary, so ceil(registers / 125) reads cover every tag.
    while f < floats or i < ints:
        straddles = (at + 1) % MAX_REGISTERS == 0  # a float there would need two reads
        if f < floats and (f * ints <= i * floats or i >= ints) and not (straddles and i < ints):
            tags.append(Tag(f"f{at}", at, "float32", "CDAB" if f % 2 else "ABCD", "value"))
            at += 2
            f += 1
        else:
            tags.append(Tag(f"i{at}", at, "int16", "ABCD", "value"))
            at += 1
            i += 1
    assert at == registers, (at, registers)
    return tags


def gateway_toml(w: Workload, ports: list[int], mqtt_port: int, work: Path) -> str:
    """`mesgw run`'s configuration: one machine per device, every tag typed."""
    lines = [
        "[gateway]",
        'id = "bench"',
        'site = "bench"',
        "[mqtt]",
        f"port = {mqtt_port}",
        'prefix = "mesgw"',
        "[outbox]",
        f'path = "{work / "outbox.db"}"',
        "[api]",
        "enabled = false",
        "[logging]",
        'level = "warning"',
        'format = "json"',
    ]
    tags = layout(w.registers)
    for n, port in enumerate(ports):
        lines += [
            "[[machines]]",
            f'id = "m{n}"',
            'area = "bench"',
            'line = "l1"',
            'state_table = "packml-packtags"',
            "ideal_cycle_time_s = 0.5",
            f'connector = {{ type = "modbus", host = "127.0.0.1", port = {port}, '
            f"poll_interval_s = {w.interval_s}, timeout_s = 2 }}",
            "[machines.tags]",
        ]
        for tag in tags:
            entry = f'role = "{tag.role}", address = "hr:{tag.register}", type = "{tag.type}"'
            if tag.order != "ABCD":
                entry += f', order = "{tag.order}"'
            if tag.role.endswith("_count"):
                entry += ", width = 32"
            lines.append(f"{tag.name} = {{ {entry} }}")
    return "\n".join(lines) + "\n"


def node_red_flow(w: Workload, ports: list[int], mqtt_port: int) -> str:
    """Node-RED's flow: per device a Modbus TCP client and reads of at most 125 registers,
    each response's raw registers published at QoS 1 (MQTT 5), as plants run it."""
    nodes: list[dict[str, Any]] = [
        {"id": "flow", "type": "tab", "label": "bench"},
        {
            "id": "broker",
            "type": "mqtt-broker",
            "name": "mosquitto",
            "broker": "127.0.0.1",
            "port": str(mqtt_port),
            "clientid": "node-red-bench",
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "5",
            "keepalive": "60",
            "cleansession": True,
            "autoUnsubscribe": True,
            "birthTopic": "",
            "closeTopic": "",
            "willTopic": "",
            "sessionExpiry": "",
        },
    ]
    if w.interval_s >= 1 and float(w.interval_s).is_integer():
        rate, unit = str(int(w.interval_s)), "s"
    else:
        rate, unit = str(round(w.interval_s * 1000)), "ms"
    for n, port in enumerate(ports):
        client = f"client{n}"
        nodes.append(
            {
                "id": client,
                "type": "modbus-client",
                "name": f"m{n}",
                "clienttype": "tcp",
                "bufferCommands": True,
                "stateLogEnabled": False,
                "queueLogEnabled": False,
                "failureLogEnabled": False,
                "tcpHost": "127.0.0.1",
                "tcpPort": str(port),
                "tcpType": "DEFAULT",
                "serialPort": "/dev/ttyUSB",
                "serialType": "RTU-BUFFERD",
                "serialBaudrate": "9600",
                "serialDatabits": "8",
                "serialStopbits": "1",
                "serialParity": "none",
                "serialConnectionDelay": "100",
                "serialAsciiResponseStartDelimiter": "0x3A",
                "unit_id": "1",
                "commandDelay": "1",
                "clientTimeout": "2000",
                "reconnectOnTimeout": True,
                "reconnectTimeout": "2000",
                "parallelUnitIdsAllowed": True,
                "showErrors": False,
                "showWarnings": False,
                "showLogs": False,
            }
        )
        for start in range(0, w.registers, MAX_REGISTERS):
            count = min(MAX_REGISTERS, w.registers - start)
            read, out = f"read{n}_{start}", f"mqtt{n}_{start}"
            nodes.append(
                {
                    "id": read,
                    "type": "modbus-read",
                    "z": "flow",
                    "name": "",
                    "topic": "",
                    "showStatusActivities": False,
                    "logIOActivities": False,
                    "showErrors": False,
                    "showWarnings": False,
                    "unitid": "",
                    "dataType": "HoldingRegister",
                    "adr": str(start),
                    "quantity": str(count),
                    "rate": rate,
                    "rateUnit": unit,
                    "delayOnStart": False,
                    "startDelayTime": "",
                    "server": client,
                    "useIOFile": False,
                    "ioFile": "",
                    "useIOForPayload": False,
                    "emptyMsgOnFail": False,
                    "x": 100,
                    "y": 40 * n,
                    "wires": [[out], []],
                }
            )
            nodes.append(
                {
                    "id": out,
                    "type": "mqtt out",
                    "z": "flow",
                    "name": "",
                    "topic": f"node-red/m{n}/hr{start}",
                    "qos": "1",
                    "retain": "false",
                    "respTopic": "",
                    "contentType": "",
                    "userProps": "",
                    "correl": "",
                    "expiry": "",
                    "broker": "broker",
                    "x": 300,
                    "y": 40 * n,
                    "wires": [],
                }
            )
    return json.dumps(nodes)
