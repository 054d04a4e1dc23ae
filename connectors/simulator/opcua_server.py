"""An asyncua server serving the tags of the OPC UA machines given to it.

Each machine is an object `nsu=<namespace>;s=<machine>` under Objects with one variable per
tag (`…;s=<machine>.good`). A variable is written only when its value changes, stamped with
the time of the change, so a source timestamp says when the machine did it. Anonymous,
no security: this is test equipment, bound to 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from asyncua import ua
from asyncua.server.server import Server

from connectors.simulator.config import MachineSpec
from connectors.simulator.layout import OpcUaTag, opcua_tags
from connectors.simulator.machine import TagValue

_INITIAL: dict[str, TagValue] = {"String": "", "Double": 0.0, "Boolean": False}


def _node_id(name: str, namespace_index: int) -> ua.NodeId:
    return ua.NodeId(cast(Any, name), cast(Any, namespace_index))


class OpcUaStation:
    def __init__(self, host: str, port: int, namespace: str, machines: list[MachineSpec]) -> None:
        self.host = host
        self.port = port
        self.namespace = namespace
        self.machines = [m.id for m in machines]
        self._specs = machines
        self._server: Server | None = None
        self._nodes: dict[str, list[tuple[OpcUaTag, ua.NodeId]]] = {}
        self._served: dict[ua.NodeId, TagValue] = {}
        self._listening = False

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/"

    async def setup(self) -> None:
        """Build the address space (slow: asyncua loads the standard nodes, about a second)."""
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("mesgw simulated line")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(self.namespace)
        for spec in self._specs:
            obj = await server.nodes.objects.add_object(
                _node_id(spec.id, idx), ua.QualifiedName(spec.id, idx)
            )
            nodes = []
            for tag in opcua_tags(spec):
                node_id = _node_id(f"{spec.id}.{tag.name}", idx)
                variant = getattr(ua.VariantType, tag.variant)
                await obj.add_variable(
                    node_id,
                    ua.QualifiedName(tag.name, idx),
                    ua.Variant(_INITIAL.get(tag.variant, 0), variant),
                )
                nodes.append((tag, node_id))
            self._nodes[spec.id] = nodes
        self._server = server

    async def publish(self, machine: str, values: Mapping[str, TagValue], ts: datetime) -> None:
        assert self._server is not None, "setup() first"
        for tag, node_id in self._nodes[machine]:
            value = values[tag.name]
            if node_id in self._served and self._served[node_id] == value:
                continue
            # No await in here suspends unless a client asked for a 0 ms publishing interval, so
            # a reader sees all of one change or none of it (good and total move together).
            variant = ua.Variant(value, getattr(ua.VariantType, tag.variant))
            stamp = cast(Any, ts)  # asyncua's DateTime is a datetime subclass for typing only
            await self._server.write_attribute_value(
                node_id, ua.DataValue(variant, SourceTimestamp=stamp, ServerTimestamp=stamp)
            )
            self._served[node_id] = value

    async def start(self) -> None:
        assert self._server is not None, "setup() first"
        await self._server.start()
        self._listening = True

    async def stop(self) -> None:
        """Close the listener and every client connection."""
        if self._server is not None and self._listening:
            self._listening = False
            await self._server.stop()
