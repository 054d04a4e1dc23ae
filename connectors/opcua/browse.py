"""`mesgw opcua browse`: the server's node tree with node ids, data types and current values."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds

# The standard Server object holds hundreds of diagnostics nodes: noise when looking for tags.
SERVER_OBJECT = ua.NodeId(cast(Any, ObjectIds.Server))
MAX_VALUE_TEXT = 60


@dataclass(frozen=True, slots=True)
class Line:
    depth: int
    browse_name: str
    node_id: str
    node_class: str
    data_type: str | None = None
    value: str | None = None

    def render(self) -> str:
        text = f"{'  ' * self.depth}{self.browse_name}  {self.node_id}"
        if self.node_class == "Variable":
            text += f"  {self.data_type or '?'} = {self.value}"
        elif self.node_class != "Object":
            text += f"  [{self.node_class}]"
        return text


def node_id_text(node: ua.NodeId, namespaces: Sequence[str], by_uri: bool) -> str:
    """`ns=2;s=X`, or `nsu=urn:…;s=X` (the form that survives namespace renumbering)."""
    text = str(node.to_string())
    if by_uri and node.NamespaceIndex and node.NamespaceIndex < len(namespaces):
        text = text.split(";", 1)[1]
        return f"nsu={namespaces[node.NamespaceIndex]};{text}"
    return text


def _value_text(dv: ua.DataValue) -> str:
    if dv.StatusCode is not None and not dv.StatusCode.is_good():
        return f"<{dv.StatusCode.name}>"
    raw = dv.Value.Value if dv.Value is not None else None
    if isinstance(raw, ua.LocalizedText):
        raw = raw.Text
    text = repr(raw) if isinstance(raw, str) else str(raw)
    return text if len(text) <= MAX_VALUE_TEXT else text[: MAX_VALUE_TEXT - 1] + "…"


class Browser:
    """Walks the hierarchy depth first, reading values and data types a level at a time."""

    def __init__(self, client: Client, *, by_uri: bool = False, everything: bool = False):
        self.client = client
        self.by_uri = by_uri
        self.everything = everything
        self.namespaces: list[str] = []
        self._type_names: dict[ua.NodeId, str] = {}

    async def walk(self, root: ua.NodeId, depth: int) -> AsyncIterator[Line]:
        self.namespaces = list(await self.client.get_namespace_array())
        top = self.client.get_node(root)
        name = (await top.read_browse_name()).Name
        node_class = (await top.read_node_class()).name
        yield Line(0, name, node_id_text(root, self.namespaces, self.by_uri), node_class)
        async for line in self._children(root, 1, depth):
            yield line

    async def _children(self, parent: ua.NodeId, level: int, depth: int) -> AsyncIterator[Line]:
        if level > depth:
            return
        refs = await self.client.get_node(parent).get_children_descriptions(
            refs=ObjectIds.HierarchicalReferences
        )
        refs = [r for r in refs if self.everything or r.NodeId != SERVER_OBJECT]
        variables = [r.NodeId for r in refs if r.NodeClass == ua.NodeClass.Variable]
        details = await self._variables(variables)
        for ref in refs:
            data_type, value = details.get(ref.NodeId, (None, None))
            yield Line(
                level,
                ref.BrowseName.Name,
                node_id_text(ref.NodeId, self.namespaces, self.by_uri),
                ref.NodeClass.name,
                data_type,
                value,
            )
            async for line in self._children(ref.NodeId, level + 1, depth):
                yield line

    async def _variables(self, nodes: list[ua.NodeId]) -> dict[ua.NodeId, tuple[str, str]]:
        if not nodes:
            return {}
        uaclient = self.client.uaclient
        values = await uaclient.read_attributes(nodes, AttributeIds.Value)
        types = await uaclient.read_attributes(nodes, AttributeIds.DataType)
        out = {}
        for node, value, dtype in zip(nodes, values, types, strict=True):
            type_id = dtype.Value.Value if dtype.Value is not None else None
            out[node] = (await self._type_name(type_id), _value_text(value))
        return out

    async def _type_name(self, type_id: ua.NodeId | None) -> str:
        if type_id is None:
            return "?"
        ident = type_id.Identifier
        if type_id.NamespaceIndex == 0 and isinstance(ident, int) and ident in ObjectIdNames:
            return str(ObjectIdNames[ident])
        if type_id not in self._type_names:
            name = await self.client.get_node(type_id).read_browse_name()
            self._type_names[type_id] = str(name.Name)
        return self._type_names[type_id]
