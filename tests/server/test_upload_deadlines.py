"""Big uploads and the body deadlines (issue 10 §4): a streamed ``POST /v1/files`` that keeps
moving goes on past ``VOICESTREAM_BODY_TIMEOUT_SECONDS`` (a file of gigabytes on a slow line
takes as long as it takes), while one that stalls is still cut by the idle timeout, and a
JSON body still has the total limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from helpers import StartedServer, settings_for_test_server, start_test_server
from voicestream.engines.catalog import EngineRegistry
from voicestream.store.embedded import ServiceURLs

BODY_TIMEOUT_S = 1.5
BODY_IDLE_S = 1.0
BOUNDARY = "vs-slow-upload"
FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
SOON_S = 10.0


@pytest.fixture(scope="module")
async def deadlines(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[StartedServer]:
    settings = settings_for_test_server(
        embedded_services,
        Path(tmp_path_factory.mktemp("deadlines")),
        body_timeout_seconds=BODY_TIMEOUT_S,
        body_idle_timeout_seconds=BODY_IDLE_S,
    )
    async with start_test_server(settings, registry, key_workspace="deadlines") as started:
        yield started


async def _slow_form(pieces: list[bytes], pause: float, stall: float = 0.0) -> AsyncIterator[bytes]:
    """A one-part multipart body, a piece every ``pause`` s; ``stall``: then nothing for that
    long before the end."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for piece in pieces:
        await asyncio.sleep(pause)  # the slow line this test is about
        yield piece
    if stall:
        await asyncio.sleep(stall)  # a peer that stops sending
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def test_a_slow_but_moving_upload_outlasts_the_body_timeout(
    http: aiohttp.ClientSession, deadlines: StartedServer
) -> None:
    pieces = [bytes([n]) * 4096 for n in range(12)]
    pause = BODY_IDLE_S / 4  # 12 pieces at 0.25 s: twice the body timeout, never idle
    started = time.monotonic()
    headers = {**deadlines.headers(), **FORM}
    form = _slow_form(pieces, pause)
    async with http.post(f"{deadlines.url}/v1/files", data=form, headers=headers) as r:
        body = await r.json()
    assert time.monotonic() - started > BODY_TIMEOUT_S
    assert r.status == 201, body
    assert body["bytes"] == sum(map(len, pieces))
    async with http.get(f"{deadlines.url}/v1/files/{body['id']}", headers=headers) as r:
        meta = await r.json()
    assert meta.get("sha256") in (None, hashlib.sha256(b"".join(pieces)).hexdigest()), meta


async def test_a_stalled_upload_is_still_cut_by_the_idle_timeout(
    http: aiohttp.ClientSession, deadlines: StartedServer
) -> None:
    headers = {**deadlines.headers(), **FORM}
    form = _slow_form([b"x" * 4096], 0.0, stall=SOON_S)
    started = time.monotonic()
    async with http.post(f"{deadlines.url}/v1/files", data=form, headers=headers) as r:
        body = await r.json()
    assert r.status == 408, body
    assert body["error"]["details"] == {"limit": "body_idle_timeout", "seconds": BODY_IDLE_S}
    assert time.monotonic() - started < SOON_S


async def test_other_bodies_keep_the_total_limit(
    http: aiohttp.ClientSession, deadlines: StartedServer
) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        for piece in (b'{"type": "tts", ', b'"input": {"text": "Hi", ', b'"voice": "slt"}}'):
            yield piece
            await asyncio.sleep(BODY_TIMEOUT_S * 0.6)  # each within the idle limit

    headers = {**deadlines.headers(), "Content-Type": "application/json"}
    async with http.post(f"{deadlines.url}/v1/jobs", data=trickle(), headers=headers) as r:
        body = await r.json()
    assert r.status == 408, body
    assert body["error"]["details"] == {"limit": "body_timeout", "seconds": BODY_TIMEOUT_S}
