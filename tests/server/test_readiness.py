"""Warm start: the server listens at once, and /readyz says 503 (naming what is still loading)
until every model has loaded in the background, then 200."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from helpers import settings_for_test_server, start_test_server
from server.waiting import eventually
from voicestream.engines.base import Synthesis, TTSEngine, Voice
from voicestream.engines.catalog import EngineRegistry
from voicestream.store.embedded import ServiceURLs


class _SlowLoadingTTS(TTSEngine):
    """A scripted engine whose model 'loads' until the test lets it finish."""

    name = "slow-loading"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.loading = threading.Event()

    def voices(self) -> list[Voice]:
        return [Voice("slow", "Slow", "en-US", "neutral", 16000, self.name)]

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        return Synthesis(b"", 16000)

    def warm_up(self) -> None:
        self.loading.set()
        self.release.wait(timeout=60)


@pytest.fixture
def slow() -> Iterator[_SlowLoadingTTS]:
    engine = _SlowLoadingTTS()
    yield engine
    engine.release.set()  # never leave the loading thread waiting


async def test_readyz_names_the_models_still_loading_then_says_ready(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    slow: _SlowLoadingTTS,
    tmp_path: Path,
) -> None:
    # The session's engines (already loaded) plus one still to load: the app loads what is
    # not loaded yet in the background, as it does at a real start.
    unloaded = EngineRegistry([*registry.tts_engines, slow], registry.stt, registry.vad)
    settings = settings_for_test_server(embedded_services, tmp_path)
    async with (
        start_test_server(settings, unloaded) as server,
        aiohttp.ClientSession() as s,
    ):
        await eventually(slow.loading.is_set, what="loading started in the background")
        async with s.get(f"{server.url}/healthz") as r:
            assert r.status == 200  # alive while loading: no restart loop for a slow start
        async with s.get(f"{server.url}/readyz") as r:
            body = await r.json()
            assert r.status == 503 and r.headers["Retry-After"], body
        assert body["status"] == "not_ready" and body["loading"] is True
        assert body["checks"]["engine:slow-loading"] is False
        assert "engine:slow-loading" in body["not_ready"]
        assert body["checks"]["database"] and body["checks"]["redis"]

        slow.release.set()

        async def ready() -> bool:
            async with s.get(f"{server.url}/readyz") as r:
                return r.status == 200 and (await r.json())["status"] == "ready"

        await eventually(ready, within=30, what="/readyz 200 once the model loaded")
        assert unloaded.ready()["slow-loading"] is True
