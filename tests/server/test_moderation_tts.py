"""Content moderation on every way text becomes speech (issue 12, item 5).

A workspace whose policy blocks a word is refused that word on every TTS route, socket and job,
in each protocol's own error shape, with nothing synthesized; the same request without it is
served. The word is written with other case and accents than the policy's, so the match is the
normalized one.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import websockets

from helpers import StartedServer
from server.clients import tts_ws
from server.waiting import eventually
from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository

BLOCKED = "Please say Zórp to the whole room."
ALLOWED = "Please say hello to the whole room."


async def moderated_workspace(
    server: StartedServer, http: aiohttp.ClientSession, **policy: Any
) -> str:
    """A fresh workspace with ``policy`` set through the admin API; returns its owner key."""
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=f"moderated-{uuid.uuid4().hex[:8]}", role="owner"
    )
    url = f"{server.url}/v1/admin/moderation/policy"
    async with http.put(url, json=policy, headers=server.headers(key)) as r:
        assert r.status == 200, await r.text()
    return key


@pytest.fixture
async def key(server: StartedServer, http: aiohttp.ClientSession) -> str:
    return await moderated_workspace(server, http, block_terms=["zorp"])


# Each HTTP TTS route: its path, a body speaking ``text``, and its refusal's (status, code).
_HTTP: dict[str, tuple[str, Callable[[str], dict[str, Any]], Callable[[Any], str]]] = {
    "native": (
        "/v1/tts",
        lambda text: {"text": text, "voice": "slt", "format": "pcm_16000"},
        lambda body: body["error"]["code"],
    ),
    "openai-speech": (
        "/openai/v1/audio/speech",
        lambda text: {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "wav"},
        lambda body: body["error"]["code"],
    ),
    "elevenlabs-convert": (
        "/elevenlabs/v1/text-to-speech/slt?output_format=pcm_16000",
        lambda text: {"text": text},
        lambda body: body["detail"]["status"],
    ),
    "elevenlabs-stream": (
        "/elevenlabs/v1/text-to-speech/slt/stream?output_format=pcm_16000",
        lambda text: {"text": text},
        lambda body: body["detail"]["status"],
    ),
    "elevenlabs-timestamps": (
        "/elevenlabs/v1/text-to-speech/slt/with-timestamps?output_format=pcm_16000",
        lambda text: {"text": text},
        lambda body: body["detail"]["status"],
    ),
    "elevenlabs-dialogue": (
        "/elevenlabs/v1/text-to-dialogue?output_format=pcm_16000",
        lambda text: {
            "inputs": [{"text": "Hi there.", "voice_id": "slt"}, {"text": text, "voice_id": "awb"}]
        },
        lambda body: body["detail"]["status"],
    ),
}


@pytest.mark.parametrize("route", sorted(_HTTP))
async def test_a_blocked_text_is_refused_on_every_http_tts_route(
    server: StartedServer, http: aiohttp.ClientSession, key: str, route: str
) -> None:
    path, body_of, code_of = _HTTP[route]
    url = f"{server.url}{path}"
    async with http.post(url, json=body_of(BLOCKED), headers=server.headers(key)) as r:
        refused = await r.json()
        assert r.status == 400, refused
    assert code_of(refused) == "content_blocked", refused
    assert "zórp" not in json.dumps(refused).lower() and "zorp" not in json.dumps(refused).lower()

    async with http.post(url, json=body_of(ALLOWED), headers=server.headers(key)) as r:
        audio = await r.read()
        assert r.status == 200, audio[:300]


async def test_a_blocked_text_closes_the_native_tts_socket(
    server: StartedServer, http: aiohttp.ClientSession, key: str
) -> None:
    said = await tts_ws(http, server.ws_url, server.headers(key), ["Hello there. ", BLOCKED])
    errors = [e for e in said.events if e.get("type") == "error"]
    assert [e.get("code") for e in errors] == ["content_blocked"], said.events
    assert said.close_code == 1008


async def _stream_input(
    server: StartedServer, messages: list[dict[str, Any]], query: str, socket: str = "stream-input"
) -> tuple[list[dict[str, Any]], int | None]:
    url = f"{server.ws_url}/elevenlabs/v1/text-to-speech/slt/{socket}?{query}"
    received: list[dict[str, Any]] = []
    async with websockets.connect(url) as ws:
        for message in messages:
            await ws.send(json.dumps(message))
        try:
            async with asyncio.timeout(60):
                async for raw in ws:
                    received.append(json.loads(raw))
        except websockets.ConnectionClosedError:
            pass
        return received, ws.close_code


@pytest.mark.parametrize("key_in", ["query", "first_message"])
async def test_a_blocked_text_closes_the_elevenlabs_stream_input_socket(
    server: StartedServer, key: str, key_in: str
) -> None:
    """With the key in the query or in the first message (known only after the stream
    opened), the workspace's policy applies."""
    first: dict[str, Any] = {"text": " "}
    query = "output_format=pcm_16000"
    if key_in == "query":
        query += f"&authorization=Bearer%20{key}"
    else:
        first["xi_api_key"] = key
    received, code = await _stream_input(
        server, [first, {"text": BLOCKED, "flush": True}, {"text": ""}], query
    )
    assert code == 1008, received
    assert not [m for m in received if m.get("audio")], "nothing of it is spoken"
    assert received[-1]["error"] == "content_blocked", received


async def test_a_blocked_text_closes_the_elevenlabs_multi_stream_input_socket(
    server: StartedServer, key: str
) -> None:
    messages = [
        {"text": " ", "context_id": "one", "xi_api_key": key},
        {"text": BLOCKED, "context_id": "one", "flush": True},
        {"text": "", "context_id": "one"},
    ]
    received, code = await _stream_input(
        server, messages, "output_format=pcm_16000", "multi-stream-input"
    )
    assert not [m for m in received if m.get("audio")], "nothing of it is spoken"
    errors = [m for m in received if "error" in m]
    assert [m["error"] for m in errors] == ["content_blocked"], received
    assert code == 1008, received


async def test_a_blocked_text_fails_its_tts_job(
    server: StartedServer, http: aiohttp.ClientSession, key: str
) -> None:
    body = {"type": "tts", "input": {"text": BLOCKED, "voice": "slt", "format": "wav_16000"}}
    async with http.post(f"{server.url}/v1/jobs", json=body, headers=server.headers(key)) as r:
        job = await r.json()
        assert r.status == 202, job

    async def finished() -> dict[str, Any] | None:
        url = f"{server.url}/v1/jobs/{job['id']}"
        async with http.get(url, headers=server.headers(key)) as r:
            seen: dict[str, Any] = await r.json()
        return seen if seen["status"] in ("failed", "dead", "completed") else None

    done = await eventually(finished, within=60, what="the job to end")
    assert done["status"] != "completed", done
    assert done["error"]["code"] == "content_blocked", done
