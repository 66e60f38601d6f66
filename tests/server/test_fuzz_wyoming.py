"""Property-based fuzzing of the Wyoming TCP endpoint with malformed byte streams.

Hypothesis draws a few pieces (events that are almost right, headers that lie about their
lengths, lines that are not headers, noise; see ``fuzz_inputs.wyoming_events``), sends them on
one connection and closes its sending side. Per connection the test asserts:

- everything the server sends is a Wyoming event the reference library reads, and an
  ``error`` event carries a code and a text;
- the server ends the connection within a deadline: nothing hangs;
- nothing in the server log at ERROR or with a traceback, and a new connection still gets
  ``info`` for ``describe``.

The endpoint is off in the shared test server, so this runs against an app of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from fuzz_inputs import fuzz_settings, wyoming_events
from hypothesis import event, given
from hypothesis import strategies as st
from wyoming.error import Error
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Describe, Info

from voicestream.config import load_settings
from voicestream.engines.catalog import EngineRegistry
from voicestream.protocols import wyoming as wy
from voicestream.server.app import create_app
from voicestream.store.embedded import ServiceURLs
from voicestream.transports.wyoming_tcp import WYOMING

EXAMPLES = 60
DEADLINE_S = 15.0
FUZZ = fuzz_settings(EXAMPLES)
# What a Wyoming server may send back.
SERVER_EVENTS = {
    "info",
    "pong",
    "error",
    "audio-start",
    "audio-chunk",
    "audio-stop",
    "synthesize-stopped",
    "transcript-start",
    "transcript-chunk",
    "transcript",
    "transcript-stop",
}


@pytest.fixture(scope="module")
async def wyoming_port(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[int]:
    settings = load_settings(
        {},
        data_dir=tmp_path_factory.mktemp("wyoming-fuzz"),
        database_url=embedded_services.database_url,
        redis_url=embedded_services.redis_url,
        port=0,
        wyoming_port=0,
        # Short texts keep the synthesis a fuzzed request may start quick.
        max_text_chars=200,
        convai_silence_timeout_seconds=0,
    )
    runner = web.AppRunner(create_app(settings, registry=registry), access_log=None)
    await runner.setup()
    try:
        yield runner.app[WYOMING].port
    finally:
        await runner.cleanup()


def _server_errors(error_log: Any) -> list[str]:
    records: list[logging.LogRecord] = error_log.records
    return [f"{r.name}: {r.getMessage()}" for r in records]


async def _exchange(port: int, data: bytes) -> list[Event]:
    """Send ``data`` then EOF; every event until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received: list[Event] = []
    try:
        writer.write(data)
        writer.write_eof()
        await writer.drain()
        while (reply := await async_read_event(reader)) is not None:
            received.append(reply)
    except ConnectionResetError:
        pass  # the server closed first, with input unread: a fine answer to bad input
    finally:
        writer.close()
    return received


# A valid opening now and then, so that the fuzz reaches into open TTS and STT streams.
OPENINGS = st.sampled_from(
    [
        b"",
        wy.encode(wy.audio_start(16000)),
        wy.encode(wy.Event("transcribe", {"language": "en"})) + wy.encode(wy.audio_start(8000)),
        wy.encode(wy.Event("synthesize-start", {"voice": {"name": "slt"}})),
    ]
)


@FUZZ
@given(opening=OPENINGS, pieces=st.lists(wyoming_events(), min_size=1, max_size=4))
async def test_wyoming_survives_malformed_streams(
    wyoming_port: int, error_log: Any, opening: bytes, pieces: list[bytes]
) -> None:
    data = opening + b"".join(pieces)
    what = f"sent {data[:300]!r}"
    async with asyncio.timeout(DEADLINE_S):
        received = await _exchange(wyoming_port, data)
    for reply in received:
        assert reply.type in SERVER_EVENTS, f"{what}: got {reply.type!r}"
        if Error.is_type(reply.type):
            err = Error.from_event(reply)
            assert err.code and err.text, f"{what}: {reply.data}"
            event(f"error {err.code}")
    assert not _server_errors(error_log), f"{what}: " + "\n".join(_server_errors(error_log))
    async with asyncio.timeout(DEADLINE_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", wyoming_port)
        try:
            await async_write_event(Describe().event(), writer)
            reply = await async_read_event(reader)
        finally:
            writer.close()
    assert reply is not None and Info.is_type(reply.type), f"after {what}: {reply}"
