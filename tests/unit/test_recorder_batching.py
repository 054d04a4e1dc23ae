"""Batch assembly in the recorder when the connection changes under it."""

from __future__ import annotations

import asyncio

from gateway.config import RecorderSection, Settings
from gateway.mqtt.client import Connected, Message
from gateway.recorder import Recorder


class _Client:
    """Stands in for the MQTT connection: only its epoch and protocol are read here."""

    def __init__(self) -> None:
        self.epoch = 1
        self.protocol = "5"
        self.paused = False

    def subscribe(self, *args: object, **kwargs: object) -> None:
        return None

    def pause_reading(self, paused: bool) -> None:
        self.paused = paused


async def test_a_resumed_session_mid_batch_yields_an_empty_batch_not_a_crash() -> None:
    recorder = Recorder(Settings(recorder=RecorderSection(batch_wait_ms=200)))
    client = _Client()
    recorder._client = client  # type: ignore[assignment]
    recorder._on_connect(Connected(epoch=1, session_present=False, receive_maximum=100))
    recorder._on_message(Message("mes/v1/s/a/l/m/count", b"", 1, False, False, 1, 1))

    async def reconnect() -> None:
        await asyncio.sleep(0)  # runs while _next_batch waits for more messages
        client.epoch = 2
        # The broker resumed our session: what was pending comes again, so it is dropped.
        recorder._on_connect(Connected(epoch=2, session_present=True, receive_maximum=100))

    task = asyncio.create_task(reconnect())
    assert await recorder._next_batch(1.0) == []
    await task


async def test_reading_pauses_above_the_high_mark_and_resumes_below_the_low_mark() -> None:
    rec = RecorderSection(receive_maximum=10, batch_max=10, batch_wait_ms=0)
    recorder = Recorder(Settings(recorder=rec))
    client = _Client()
    recorder._client = client  # type: ignore[assignment]
    recorder._on_connect(Connected(epoch=1, session_present=False, receive_maximum=100))
    for mid in range(1, 21):
        recorder._on_message(Message("mes/v1/s/a/l/m/count", b"", 1, False, False, mid, 1))
        assert client.paused == (mid >= 20)  # high mark: 2 x receive maximum
    assert len(await recorder._next_batch(1.0)) == 10
    assert not client.paused  # 10 left: at the low mark
