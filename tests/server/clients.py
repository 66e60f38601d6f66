"""Test-side clients for the native API, written against the wire protocol only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class TTSResult:
    audio: bytes = b""
    frames: list[bytes] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None


async def tts_ws(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    pieces: list[str],
    *,
    voice: str = "slt",
    fmt: str = "pcm_16000",
) -> TTSResult:
    """Send ``pieces`` as text messages, then end; collect audio and events until close."""
    out = TTSResult()
    async with session.ws_connect(
        f"{url}/v1/tts/stream", params={"voice": voice, "format": fmt}, headers=headers
    ) as ws:
        for piece in pieces:
            await ws.send_json({"type": "text", "text": piece})
        await ws.send_json({"type": "end"})
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                out.frames.append(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                out.events.append(json.loads(msg.data))
        out.close_code = ws.close_code
    out.audio = b"".join(out.frames)
    return out


async def stt_http(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    audio: bytes,
    *,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    async with session.post(f"{url}/v1/stt", data=audio, params=params, headers=headers) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body
