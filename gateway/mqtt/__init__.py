"""MQTT: the shared connection wrapper, the outbox publisher."""

from gateway.mqtt.client import (
    Connected,
    Disconnected,
    Message,
    MqttClient,
    NotConnected,
    PubAck,
    SessionOptions,
    SubAck,
    Will,
)

__all__ = [
    "Connected",
    "Disconnected",
    "Message",
    "MqttClient",
    "NotConnected",
    "PubAck",
    "SessionOptions",
    "SubAck",
    "Will",
]
