"""A test-side client of the conversation socket, written against the wire protocol only."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from server.waiting import SocketRecorder

FRAME = 640  # 20 ms of 16 kHz s16le


class ConvaiClient(SocketRecorder):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.events: list[dict[str, Any]] = []
        self.event_times: list[float] = []
        self.audio = bytearray()
        self.audio_chunks: list[tuple[float, int]] = []  # (arrival, offset into audio)
        super().__init__(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            now = time.monotonic()
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.audio_chunks.append((now, len(self.audio)))
                self.audio += msg.data
            elif msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))
                self.event_times.append(now)
            self._changed.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def describe(self) -> str:
        return f"events so far: {self.events}"

    async def wait_event(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        within: float = 30.0,
    ) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for e in self.events:
                if e["type"] == kind and (where is None or where(e)):
                    return e
            return None

        found: dict[str, Any] = await self.wait_for(find, within)
        return found

    async def send_speech(self, pcm: bytes, *, realtime: bool = False) -> None:
        for i in range(0, len(pcm), FRAME):
            await self.ws.send_bytes(pcm[i : i + FRAME])
            if realtime:
                await asyncio.sleep(0.02)

    async def audio_quiet_for(self, seconds: float, within: float = 30.0) -> bytes:
        """Wait until no audio has arrived for ``seconds``; return all audio so far."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            last = self.audio_chunks[-1][0] if self.audio_chunks else 0.0
            if self.audio_chunks and time.monotonic() - last >= seconds:
                return bytes(self.audio)
            await asyncio.sleep(0.05)
        raise AssertionError("agent audio never went quiet")

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
