"""MQTT 5 properties decoded in constant time per property, for paho's receive path.

paho's `Properties` builds two 27-entry tables on every construction and finds a property's
name by scanning them, so decoding the two properties our events carry costs ~25 µs per
message: more than validating the event itself, and the recorder's largest cost on a
backlog. `FastProperties` shares the tables and looks names up in dicts; it is a subclass
with the same behaviour, installed for paho's packet decoder by `install()`.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt import _packet
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

_TEMPLATE = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_IDENT = {name.replace(" ", ""): ident for name, ident in _TEMPLATE.names.items()}
_NAME = {ident: name for name, ident in _TEMPLATE.names.items()}
_MULTIPLE = frozenset(name for name, ident in _IDENT.items() if ident in (11, 38))
# paho range-checks these on assignment; they take paho's own (slow, rare) path.
_CHECKED = frozenset(
    (
        "ReceiveMaximum",
        "TopicAlias",
        "TopicAliasMaximum",
        "MaximumPacketSize",
        "SubscriptionIdentifier",
        "RequestResponseInformation",
        "RequestProblemInformation",
        "PayloadFormatIndicator",
    )
)
_TABLES = ("packetType", "types", "names", "properties")


class FastProperties(Properties):
    def __init__(self, packetType: int) -> None:
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", _TEMPLATE.types)
        object.__setattr__(self, "names", _TEMPLATE.names)
        object.__setattr__(self, "properties", _TEMPLATE.properties)

    def getIdentFromName(self, compressedName: str) -> int:
        return _IDENT.get(compressedName, -1)

    def getNameFromIdent(self, identifier: int) -> str | None:
        return _NAME.get(identifier)

    def allowsMultiple(self, compressedName: str) -> bool:
        return compressedName in _MULTIPLE

    def clear(self) -> None:
        for key in [k for k in vars(self) if k in _IDENT]:
            object.__delattr__(self, key)

    def isEmpty(self) -> bool:
        return not any(k in _IDENT for k in vars(self))

    def __setattr__(self, name: str, value: Any) -> None:
        compressed = name.replace(" ", "")
        ident = _IDENT.get(compressed)
        if ident is None or compressed in _CHECKED:
            # Unknown names (errors) and range-checked ones take paho's own, rare path.
            super().__setattr__(name, value)  # type: ignore[no-untyped-call]
            return
        if self.packetType not in self.properties[ident][1]:
            packet = PacketTypes.Names[self.packetType]
            raise MQTTException(f"Property {compressed} does not apply to packet type {packet}")
        if compressed in _MULTIPLE:
            value = value if isinstance(value, list) else [value]
            if compressed in vars(self):
                value = object.__getattribute__(self, compressed) + value
        object.__setattr__(self, compressed, value)


def install() -> None:
    """Make paho's packet decoder build FastProperties (idempotent)."""
    _packet.Properties = FastProperties  # type: ignore[attr-defined]
