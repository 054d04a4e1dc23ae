"""Node ids as written in the configuration: `ns=2;s=Line1.Good`, `nsu=urn:plant;i=42`, `i=2258`.

A namespace URI (`nsu=`) is the stable form: servers may renumber namespace indexes when they
restart, so the URI is looked up in the server's namespace array after every connect.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import Literal

IdKind = Literal["i", "s", "g", "b"]
Identifier = int | str | uuid.UUID | bytes

_FORM = re.compile(r"^(?:ns=(?P<ns>\d+);|nsu=(?P<nsu>[^;]+);)?(?P<kind>[isgb])=(?P<id>.*)$", re.S)


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """A parsed node id; exactly one of `namespace_index` and `namespace_uri` is set."""

    kind: IdKind
    identifier: Identifier
    namespace_index: int | None = 0
    namespace_uri: str | None = None

    def __str__(self) -> str:
        prefix = f"nsu={self.namespace_uri};" if self.namespace_uri else ""
        if self.namespace_uri is None and self.namespace_index:
            prefix = f"ns={self.namespace_index};"
        ident = self.identifier
        text = base64.b64encode(ident).decode() if isinstance(ident, bytes) else str(ident)
        return f"{prefix}{self.kind}={text}"


def parse_node_id(text: str) -> NodeAddress:
    """Parse the OPC UA string form of a node id; ValueError says what is wrong."""
    match = _FORM.match(text.strip())
    if match is None:
        raise ValueError(
            f"not an OPC UA node id: {text!r} "
            "(expected e.g. ns=2;s=Line1.Good, nsu=urn:plant:filler;s=Good or i=2258)"
        )
    kind: IdKind = match["kind"]  # type: ignore[assignment]
    raw = match["id"]
    identifier: Identifier
    if kind == "i":
        if not raw.isdigit() or int(raw) > 0xFFFFFFFF:
            raise ValueError(f"numeric node id must be 0..4294967295, got {raw!r}")
        identifier = int(raw)
    elif kind == "s":
        if not raw:
            raise ValueError("string node id is empty")
        identifier = raw
    elif kind == "g":
        try:
            identifier = uuid.UUID(raw)
        except ValueError as err:
            raise ValueError(f"not a GUID: {raw!r}") from err
    else:
        try:
            identifier = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"opaque node id is not base64: {raw!r}") from err
    if match["nsu"] is not None:
        return NodeAddress(kind, identifier, namespace_index=None, namespace_uri=match["nsu"])
    index = int(match["ns"]) if match["ns"] is not None else 0
    if index > 0xFFFF:
        raise ValueError(f"namespace index must be 0..65535, got {index}")
    return NodeAddress(kind, identifier, namespace_index=index)
