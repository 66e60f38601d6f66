"""``voicestream serve`` as a process: clients that vanish mid-stream cannot crash it (they did:
a segfault in pocketsphinx), and when it dies anyway, however it dies, its embedded PostgreSQL
and Redis stop with it, a native crash leaves a Python traceback in its output, and the same
data dir serves again."""

from __future__ import annotations

import asyncio
import base64
import shutil
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helpers import normalize
from served_process import ServedProcess, clean_env, wait_pids_gone

# The light engines: this is about the process, not about what it says.
_ENV = {"VOICESTREAM_STT_ENGINE": "pocketsphinx", "VOICESTREAM_DEFAULT_VOICE": "slt"}


@pytest.fixture
def data_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "data"
    yield path
    pg_dir = path / "postgres"
    if pg_dir.is_symlink():
        # As root under a private tmp dir the cluster lives outside the data dir; tidy it.
        shutil.rmtree(pg_dir.resolve(), ignore_errors=True)


# What LiveKit's realtime STT sends (livekit-plugins-openai, stt.py): GA shape, no beta header.
_LIVEKIT_UPDATE = {
    "type": "session.update",
    "session": {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 600,
                    "silence_duration_ms": 350,
                },
            }
        },
    },
}
_SENTENCE = "Please call me back tomorrow afternoon about the meeting."
_WAVES = 4
_ABRUPT_PER_WAVE = 6


def _append(pcm: bytes) -> dict[str, str]:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}


async def _abrupt_client(url: str, key: str, speech: bytes, pieces: int) -> None:
    """Configures, pours audio in unpaced, and vanishes without a close frame."""
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {key}"})
        await ws.send_json(_LIVEKIT_UPDATE)
        step = 12_000  # 250 ms of 24 kHz s16le
        for i in range(pieces):
            await ws.send_json(_append(speech[(i * step) % len(speech) :][:step]))
    finally:
        # Drops the TCP connection under the socket: the server finds out mid-transcription.
        await session.close()


async def _steady_client(url: str, key: str, speech: bytes) -> str:
    """Streams a sentence at four times real time and waits for its transcript."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"Authorization": f"Bearer {key}"}) as ws,
    ):
        await ws.send_json(_LIVEKIT_UPDATE)
        silence = bytes(24_000)
        audio = silence + speech + silence * 2
        for i in range(0, len(audio), 4800):
            await ws.send_json(_append(audio[i : i + 4800]))
            await asyncio.sleep(0.025)
        async for msg in ws:
            event: dict[str, Any] = msg.json()
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                return str(event["transcript"])
    raise AssertionError("the socket closed before a transcript")


async def _storm(base: str, key: str, speech: bytes) -> list[str]:
    url = base.replace("http", "ws", 1) + "/openai/v1/realtime?intent=transcription"
    steady = [asyncio.ensure_future(_steady_client(url, key, speech)) for _ in range(2)]
    for wave in range(_WAVES):
        await asyncio.gather(
            *(_abrupt_client(url, key, speech, 2 + (wave + i) % 5) for i in range(_ABRUPT_PER_WAVE))
        )
    return list(await asyncio.wait_for(asyncio.gather(*steady), 120))


def test_abrupt_clients_cannot_crash_the_server_and_a_dead_one_leaves_nothing_running(
    data_dir: Path, tmp_path: Path
) -> None:
    env = clean_env(**_ENV, VOICESTREAM_STT_THREADS="3")
    for sig in (signal.SIGKILL, signal.SIGSEGV):
        served = ServedProcess(data_dir, tmp_path / f"server-{sig.name}.log", env)
        try:
            # The second round also proves that a data dir a killed server left behind
            # starts again.
            served.wait_ready()
            if sig == signal.SIGKILL:
                # LiveKit's realtime STT against other live sessions, when it crashed the
                # server: sessions that configure, send audio and are gone mid-transcription.
                key = served.create_key()
                speech = served.tts(key, _SENTENCE, "pcm_24000")
                try:
                    heard = asyncio.run(_storm(served.base, key, speech))
                except (AssertionError, aiohttp.ClientError) as exc:
                    raise AssertionError(
                        f"{exc!r}; server exit code {served.proc.poll()}, its output:\n"
                        f"{served.log()}"
                    ) from exc
                assert served.proc.poll() is None, served.log()
                for transcript in heard:
                    assert {"call", "back", "tomorrow"} <= set(normalize(transcript).split())
                assert "Traceback" not in served.log(), served.log()
            pids = served.service_pids()
            assert set(pids) == {"postgres", "redis"}, pids
            rc = served.stop(sig)
            assert rc == -sig, served.log()
            left = wait_pids_gone(pids, within=30)
            assert not left, f"{left} outlived a server killed by {sig.name}:\n{served.log()}"
            if sig == signal.SIGSEGV:
                # faulthandler is on in `voicestream serve`: a native crash names its stack.
                assert "Fatal Python error: Segmentation fault" in served.log()
        finally:
            served.close()
