"""The Wyoming TCP endpoint's bounds: a cap on connections, an idle timeout, a deadline on
every send (a client that stops reading is cut off), the STT cap answered with an ``error``
event, and the transcription accounting (gauge and usage) settled once per stream.

Two dedicated apps share the session's database and one registry of their own (the STT cap
belongs to the engine): ``limited`` with few connections, one STT stream and a short send
deadline; ``impatient`` with a short idle timeout.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from waiting import eventually
from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.tts import Synthesize

from voicestream.config import load_settings
from voicestream.engines.catalog import EngineRegistry, build_default_registry
from voicestream.engines.pocketsphinx_stt import PocketsphinxSTT
from voicestream.engines.whisper_stt import WhisperSTT
from voicestream.rest.resources import METRICS, POOL, USAGE
from voicestream.server.app import create_app
from voicestream.store.embedded import ServiceURLs
from voicestream.store.workspaces import find_workspace
from voicestream.transports.wyoming_tcp import USAGE_WORKSPACE, WYOMING

MAX_CONNECTIONS = 2
SEND_TIMEOUT_S = 1.0
IDLE_S = 2.0
MAX_TEXT = 2000
SOON_S = 15.0  # generous bound on "soon" for a loaded two-core machine


@dataclass
class App:
    runner: web.AppRunner
    port: int

    def client(self) -> AsyncTcpClient:
        return AsyncTcpClient("127.0.0.1", self.port, connect_timeout=30, read_timeout=SOON_S)

    def gauge(self, kind: str) -> float:
        value = self.runner.app[METRICS].registry.get_sample_value(
            "voicestream_active_streams", {"kind": kind}
        )
        return value or 0.0

    def errors(self, code: str) -> float:
        value = self.runner.app[METRICS].registry.get_sample_value(
            "voicestream_client_errors_total", {"code": code}
        )
        return value or 0.0


@pytest.fixture(scope="module")
def limits_registry() -> Iterator[EngineRegistry]:
    registry = build_default_registry(load_settings({}, max_stt_streams=1, stt_threads=1))
    yield registry
    for engine in registry.stt_engines():
        if isinstance(engine, (PocketsphinxSTT, WhisperSTT)):
            engine.close()


async def _start(
    services: ServiceURLs, registry: EngineRegistry, data_dir: Path, **limits: Any
) -> App:
    settings = load_settings(
        {},
        data_dir=data_dir,
        database_url=services.database_url,
        redis_url=services.redis_url,
        port=0,
        wyoming_port=0,
        max_text_chars=MAX_TEXT,
        convai_silence_timeout_seconds=0,
        max_stt_streams=1,
        stt_threads=1,
        **limits,
    )
    runner = web.AppRunner(create_app(settings, registry=registry), access_log=None)
    await runner.setup()
    return App(runner, runner.app[WYOMING].port)


@pytest.fixture(scope="module")
async def limited(
    embedded_services: ServiceURLs,
    limits_registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[App]:
    app = await _start(
        embedded_services,
        limits_registry,
        tmp_path_factory.mktemp("wyoming-limited"),
        wyoming_max_connections=MAX_CONNECTIONS,
        ws_send_timeout_seconds=SEND_TIMEOUT_S,
    )
    try:
        yield app
    finally:
        await app.runner.cleanup()


@pytest.fixture(scope="module")
async def impatient(
    embedded_services: ServiceURLs,
    limits_registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[App]:
    app = await _start(
        embedded_services,
        limits_registry,
        tmp_path_factory.mktemp("wyoming-impatient"),
        wyoming_idle_timeout_seconds=IDLE_S,
    )
    try:
        yield app
    finally:
        await app.runner.cleanup()


async def read(client: AsyncTcpClient) -> Event:
    event = await client.read_event()
    assert event is not None, "server closed the connection"
    return event


async def until_closed(client: AsyncTcpClient) -> list[Event]:
    """Every event until the server closes the connection."""
    events: list[Event] = []
    async with asyncio.timeout(SOON_S):
        while (event := await client.read_event()) is not None:
            events.append(event)
    return events


def the_error(events: list[Event]) -> Error:
    assert events and Error.is_type(events[-1].type), events
    return Error.from_event(events[-1])


async def no_connections(app: App) -> None:
    await eventually(
        lambda: app.gauge("wyoming_connection") == 0, within=SOON_S, what="no open connections"
    )


# ---- connections ----------------------------------------------------------------------------


async def test_connections_past_the_cap_get_an_error_then_close(limited: App) -> None:
    await no_connections(limited)
    async with limited.client() as first, limited.client() as second:
        for client in (first, second):
            await client.write_event(Describe().event())
            assert Info.is_type((await read(client)).type)
        assert limited.gauge("wyoming_connection") == MAX_CONNECTIONS
        async with limited.client() as extra:
            err = the_error(await until_closed(extra))
        assert err.code == "rate_limited" and str(MAX_CONNECTIONS) in err.text
        # The connections inside the cap are unaffected.
        await first.write_event(Ping(text="still").event())
        assert Pong.is_type((await read(first)).type)
    # Their places are given back once they close.
    await no_connections(limited)
    async with limited.client() as again:
        await again.write_event(Describe().event())
        assert Info.is_type((await read(again)).type)


async def test_a_silent_connection_is_closed_after_the_idle_timeout(impatient: App) -> None:
    async with impatient.client() as client:
        err = the_error(await until_closed(client))
    assert err.code == "request_timeout" and f"{IDLE_S:g} s" in err.text
    await no_connections(impatient)


async def test_a_trickled_event_does_not_keep_the_connection_open(impatient: App) -> None:
    # A slowloris: a byte of a header now and then, never a whole event.
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient.port)
    header = b'{"type": "ping", "pad": "' + b"x" * 1000
    events: list[Event] = []
    try:
        async with asyncio.timeout(SOON_S):
            for byte in header:
                if reader.at_eof() or writer.is_closing():
                    break
                writer.write(bytes([byte]))
                try:
                    await writer.drain()
                    # Pacing the sender, not waiting for state: a byte every 0.2 s.
                    event = await asyncio.wait_for(async_read_event(reader), 0.2)
                except TimeoutError:
                    continue
                except ConnectionError:
                    break
                if event is None:
                    break
                events.append(event)
    finally:
        writer.close()
    assert [e.type for e in events] == ["error"], events
    assert Error.from_event(events[0]).code == "request_timeout"


async def test_events_keep_the_connection_open(impatient: App) -> None:
    async with impatient.client() as client:
        # Two pauses that together pass the idle timeout, each well within it.
        for _ in range(2):
            await asyncio.sleep(IDLE_S * 0.6)  # pacing the client, not waiting for state
            await client.write_event(Ping(text="here").event())
            assert Pong.is_type((await read(client)).type)


# ---- a client that stops reading ------------------------------------------------------------


async def test_a_client_that_stops_reading_is_cut_off(limited: App) -> None:
    await no_connections(limited)
    before = limited.errors("client_too_slow")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive window, so that what the server sends piles up on its side.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", limited.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        text = ("A long story that nobody will ever hear. " * 60)[:MAX_TEXT]
        for _ in range(3):
            await async_write_event(Synthesize(text=text).event(), writer)
        await eventually(
            lambda: limited.errors("client_too_slow") > before,
            within=SOON_S,
            what="the server to give up on the client",
        )
        await no_connections(limited)
        # What the server had queued may still arrive; then the connection ends.
        async with asyncio.timeout(SOON_S):
            with pytest.raises(ConnectionResetError):
                while await reader.read(1 << 16):
                    pass
                raise ConnectionResetError("closed cleanly")
    finally:
        writer.close()


# ---- the STT cap and its accounting ---------------------------------------------------------


def _audio_start() -> Event:
    return AudioStart(rate=16000, width=2, channels=1).event()


def _silence(seconds: float) -> Event:
    audio = bytes(int(seconds * 16000) * 2)
    return AudioChunk(rate=16000, width=2, channels=1, audio=audio).event()


async def _usage(app: App) -> dict[str, float]:
    rt = app.runner.app
    workspace = await find_workspace(rt[POOL], USAGE_WORKSPACE)
    assert workspace is not None
    return await rt[USAGE].totals(workspace)


async def test_stt_past_the_cap_gets_a_busy_error(
    limited: App, limits_registry: EngineRegistry
) -> None:
    await no_connections(limited)
    before = await _usage(limited)
    async with limited.client() as holder:
        await holder.write_event(_audio_start())
        await holder.write_event(_silence(0.5))
        await holder.write_event(Ping(text="sync").event())
        assert Pong.is_type((await read(holder)).type)
        async with limited.client() as refused:
            await refused.write_event(_audio_start())
            err = the_error(await until_closed(refused))
        assert err.code == "rate_limited", err
        # The stream that holds the place is unaffected.
        await holder.write_event(AudioStop().event())
        events = []
        while (event := await read(holder)).type != "transcript-stop":
            events.append(event)
        assert any(Transcript.is_type(e.type) for e in events), events
    await eventually(
        lambda: limits_registry.stt.pool_stats().streams == 0,
        within=SOON_S,
        what="the STT place given back",
    )
    # Each transcription is counted once: the gauge is back to zero, the usage is its audio.
    await eventually(
        lambda: limited.gauge("wyoming_stt") == 0, within=SOON_S, what="no open transcription"
    )
    after = await _usage(limited)
    assert after["stt_seconds"] - before["stt_seconds"] == pytest.approx(0.5, abs=0.05)
