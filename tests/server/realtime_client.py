"""Test-side helpers for the OpenAI Realtime socket: record what a connection receives (the
official SDK's parsed events, or raw JSON from a plain socket) and wait on it without polling."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from server.waiting import wait_for_change

AUDIO_DELTAS = ("response.output_audio.delta", "response.audio.delta")
PCM24_CHUNK = 4800  # 100 ms of 24 kHz s16le, what browser and SDK samples append


def kind(event: Any) -> str:
    """An event's type, whether an SDK model or a raw dict."""
    value = event["type"] if isinstance(event, dict) else event.type
    return str(value)


def field(event: Any, name: str) -> Any:
    return event.get(name) if isinstance(event, dict) else getattr(event, name, None)


class Recorder:
    """Collects every event a connection yields, in order, until it closes."""

    def __init__(self, source: AsyncIterator[Any]) -> None:
        self.events: list[Any] = []
        self.error: BaseException | None = None  # how the connection ended, if not cleanly
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read(source))

    async def _read(self, source: AsyncIterator[Any]) -> None:
        try:
            async for event in source:
                self.events.append(event)
                self._changed.set()
        except Exception as exc:  # the SDK raises when the server closes with an error code
            self.error = exc
        finally:
            self._changed.set()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    def of(self, name: str) -> list[Any]:
        return [e for e in self.events if kind(e) == name]

    def index(self, event: Any) -> int:
        return next(i for i, e in enumerate(self.events) if e is event)

    async def wait_for(self, pred: Callable[[], Any], within: float = 60.0) -> Any:
        return await wait_for_change(
            pred,
            self._changed,
            self._reader,
            within=within,
            describe=lambda: f"events so far: {[kind(e) for e in self.events]}",
        )

    async def wait_event(
        self, name: str, where: Callable[[Any], bool] | None = None, within: float = 60.0
    ) -> Any:
        def find() -> Any:
            for e in self.events:
                if kind(e) == name and (where is None or where(e)):
                    return e
            return None

        return await self.wait_for(find, within)

    async def wait_closed(self, within: float = 30.0) -> None:
        await asyncio.wait_for(asyncio.shield(self._reader), within)

    def audio(self, response_id: str) -> bytes:
        """The audio deltas of one response, joined."""
        return b"".join(
            base64.b64decode(field(e, "delta"))
            for e in self.events
            if kind(e) in AUDIO_DELTAS and field(e, "response_id") == response_id
        )

    def stop(self) -> None:
        self._reader.cancel()


async def raw_events(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    """A plain socket's JSON events (the wire, without the SDK)."""
    async for msg in ws:
        assert msg.type == aiohttp.WSMsgType.TEXT, msg  # the server sends JSON text only
        yield json.loads(msg.data)


def chunks(pcm: bytes, size: int = PCM24_CHUNK) -> list[str]:
    """Audio as the base64 pieces ``input_audio_buffer.append`` carries."""
    return [base64.b64encode(pcm[i : i + size]).decode() for i in range(0, len(pcm), size)]
