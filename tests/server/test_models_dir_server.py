"""A server started on a models directory: the good voice and Whisper model are served and
listed in every catalog; the broken files are reported by name at start-up and skipped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from helpers import StartedServer, settings_for_test_server, start_test_server
from model_files import ModelsDir, add_unloadable_voice, make_models_dir
from voicestream.engines.catalog import EngineRegistry, build_default_registry
from voicestream.store.embedded import ServiceURLs

# Passes the cheap file check at start-up, fails when ONNX Runtime loads it.
UNLOADABLE = "en_US-noload-medium"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelsDir:
    models = make_models_dir(tmp_path_factory.mktemp("models"), whisper=True)
    add_unloadable_voice(models.root, UNLOADABLE)
    return models


@pytest.fixture(scope="module")
def startup_log() -> list[logging.LogRecord]:
    return []


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def models_server(
    embedded_services: ServiceURLs,
    models: ModelsDir,
    startup_log: list[logging.LogRecord],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[StartedServer, EngineRegistry]]:
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("models-server"),
        models_dir=models.root,
        stt_engine="pocketsphinx",  # the models dir's Whisper model loads all the same
        stt_threads=1,
    )

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            startup_log.append(record)

    recorder = Recorder(logging.WARNING)
    logging.getLogger("voicestream").addHandler(recorder)
    try:
        registry = await asyncio.to_thread(build_default_registry, settings)
    finally:
        logging.getLogger("voicestream").removeHandler(recorder)
    async with start_test_server(settings, registry, key_workspace="models-dir") as server:
        yield server, registry


async def test_broken_files_are_logged_by_name_and_skipped(
    models_server: tuple[StartedServer, EngineRegistry],
    models: ModelsDir,
    startup_log: list[logging.LogRecord],
) -> None:
    server, registry = models_server
    logged = "\n".join(r.getMessage() for r in startup_log)
    assert str(models.broken_voice) in logged and str(models.broken_whisper) in logged
    assert all(r.levelno < logging.ERROR for r in startup_log), logged
    problems = {p.file: p.reason for p in registry.problems()}
    assert "truncated" in problems[str(models.broken_voice)]
    assert "model.bin" in problems[str(models.broken_whisper)]
    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/readyz") as r:
        body = await r.json()
    # Skipped files do not hold readiness back: everything that loaded is ready.
    assert r.status == 200, body


async def test_the_good_voice_is_listed_with_its_language_and_speaks(
    models_server: tuple[StartedServer, EngineRegistry], models: ModelsDir
) -> None:
    server, _ = models_server
    async with aiohttp.ClientSession(headers=server.headers()) as s:
        async with s.get(f"{server.url}/v1/voices") as r:
            voices = {v["id"]: v for v in (await r.json())["voices"]}
        async with s.get(f"{server.url}/elevenlabs/v1/voices") as r:
            eleven = {v["voice_id"]: v for v in (await r.json())["voices"]}
        async with s.post(
            f"{server.url}/v1/tts",
            json={"text": "Hello there.", "voice": models.good_voice, "format": "pcm_16000"},
        ) as r:
            audio = await r.read()
            assert r.status == 200, audio[:200]
    voice = voices[models.good_voice]
    assert (voice["engine"], voice["language"], voice["sample_rate"]) == ("piper", "en-US", 22050)
    assert "en_US-joe-medium" in voices  # the packaged voice stays
    assert "en_US-cut-medium" not in voices
    assert eleven[models.good_voice]["labels"]["locale"] == "en-US"
    assert len(audio) > 16000  # more than half a second of 16 kHz s16le


async def test_the_whisper_model_is_in_the_compatibility_catalogs(
    models_server: tuple[StartedServer, EngineRegistry], models: ModelsDir, sample_dir: Path
) -> None:
    server, registry = models_server
    assert models.whisper is not None
    assert registry.stt_for(models.whisper).name == f"whisper-{models.whisper}"
    async with aiohttp.ClientSession(headers=server.headers()) as s:
        async with s.get(f"{server.url}/openai/v1/models") as r:
            ids = [m["id"] for m in (await r.json())["data"]]
        async with s.get(f"{server.url}/openai/v1/models/{models.whisper}") as r:
            assert r.status == 200 and (await r.json())["id"] == models.whisper
        async with s.get(f"{server.url}/openai/v1/models/whisper-without-weights") as r:
            assert r.status == 404
    assert models.whisper in ids and "whisper-1" in ids
    assert "whisper-without-weights" not in ids


async def test_the_native_model_list_shows_both_without_server_paths(
    models_server: tuple[StartedServer, EngineRegistry], models: ModelsDir
) -> None:
    server, _ = models_server
    async with (
        aiohttp.ClientSession(headers=server.headers()) as s,
        s.get(f"{server.url}/v1/models") as r,
    ):
        assert r.status == 200
        listed = {m["id"]: m for m in (await r.json())["models"]}
    voice, whisper = listed[models.good_voice], listed[str(models.whisper)]
    assert (voice["kind"], voice["engine"], voice["language"]) == ("voice", "piper", "en-US")
    assert (whisper["kind"], whisper["engine"]) == ("stt", f"whisper-{models.whisper}")
    assert voice["origin"] == whisper["origin"] == "models dir"
    assert voice["ready"] and whisper["ready"] and voice["bytes"] > 50_000_000
    assert all("path" not in m for m in listed.values())
    assert str(models.root) not in str(listed)
    assert listed["pocketsphinx en-us"]["default"] is True  # this server's STT engine


async def test_elevenlabs_speech_to_text_picks_the_installed_model_by_name(
    models_server: tuple[StartedServer, EngineRegistry], models: ModelsDir
) -> None:
    server, _ = models_server
    assert models.whisper is not None
    async with aiohttp.ClientSession(headers=server.headers()) as s:
        async with s.post(
            f"{server.url}/v1/tts",
            json={"text": "The museum opens at nine.", "voice": "slt", "format": "wav_16000"},
        ) as r:
            assert r.status == 200
            wav = await r.read()

        async def transcribe(model_id: str) -> tuple[int, dict[str, object]]:
            form = aiohttp.FormData()
            form.add_field("model_id", model_id)
            form.add_field("file", wav, filename="speech.wav", content_type="audio/wav")
            async with s.post(f"{server.url}/elevenlabs/v1/speech-to-text", data=form) as r:
                return r.status, await r.json()

        status, body = await transcribe(models.whisper)
        assert status == 200, body
        # Whisper's own writing: capitals, punctuation, digits (pocketsphinx gives none).
        assert str(body["text"]).startswith("The museum opens at 9"), body
        status, body = await transcribe("scribe_v1")  # the default engine: pocketsphinx here
        assert status == 200 and "museum" in str(body["text"]).lower(), body
        status, body = await transcribe("whisper-without-weights")
        assert status == 422, body


async def test_a_voice_whose_model_fails_to_load_is_gone_from_every_catalog(
    models_server: tuple[StartedServer, EngineRegistry], models: ModelsDir
) -> None:
    server, registry = models_server
    assert UNLOADABLE not in {v.id for v in registry.voices()}
    problems = {p.file: p.reason for p in registry.problems()}
    assert "cannot load" in problems[str(models.root / f"{UNLOADABLE}.onnx")]
    async with aiohttp.ClientSession(headers=server.headers()) as s:
        async with s.get(f"{server.url}/v1/voices") as r:
            assert UNLOADABLE not in {v["id"] for v in (await r.json())["voices"]}
        async with s.get(f"{server.url}/elevenlabs/v1/voices") as r:
            assert UNLOADABLE not in {v["voice_id"] for v in (await r.json())["voices"]}
        async with s.get(f"{server.url}/v1/models") as r:
            listed = {m["id"]: m for m in (await r.json())["models"]}
        # Listed for the operator, but not ready: it cannot speak.
        assert listed[UNLOADABLE]["ready"] is False
        async with s.post(
            f"{server.url}/v1/tts", json={"text": "Hello.", "voice": UNLOADABLE}
        ) as r:
            body = await r.json()
        # An unknown voice (a client error), not a 503 that names the server's files.
        assert r.status == 400 and body["error"]["code"] == "unknown_voice", body
        assert str(models.root) not in str(body)
        async with s.post(
            f"{server.url}/openai/v1/audio/speech",
            json={"model": "tts-1", "input": "Hello.", "voice": UNLOADABLE},
        ) as r:
            body = await r.json()
        assert r.status == 400 and str(models.root) not in str(body), body
