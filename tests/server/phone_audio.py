"""What the telephony tests share: a caller speaking with a natural voice down a phone line,
and the checks on what came back up it — the agent's words (our own STT, at the call's rate),
its G.711 law and length (against our TTS saying the same text), and the stored conversation.

Whisper (the default STT) hears 8 kHz phone audio about as well as wideband: 1-2 % WER with a
natural voice, so the caller's words are checked word for word and the agent's by key words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import jiwer
import numpy as np

from helpers import normalize
from server.waiting import eventually
from voicestream.media.resample import resample

# The caller: the default Piper voice, the one the agents speak with too, but a fresh synthesis
# (VITS draws noise on every run) resampled and companded as a phone carries it.
CALLER_VOICE = "en_US-joe-medium"


async def synthesize(
    server: Any, s: aiohttp.ClientSession, text: str, fmt: str, voice: str | None = None
) -> bytes:
    """``text`` spoken by the server's TTS in ``fmt`` (the default voice unless ``voice``)."""
    body = {"text": text, "format": fmt, **({"voice": voice} if voice else {})}
    async with s.post(f"{server.url}/v1/tts", json=body, headers=server.headers()) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def caller_says(server: Any, s: aiohttp.ClientSession, text: str) -> bytes:
    """The caller's words as 16 kHz s16le PCM, before the line."""
    return await synthesize(server, s, text, "pcm_16000", CALLER_VOICE)


def phone_line(pcm16k: bytes, encode: Callable[[bytes], bytes]) -> bytes:
    """16 kHz PCM as a G.711 line carries it: 8 kHz, then ``encode`` (μ-law or A-law)."""
    return encode(resample(pcm16k, 16000, 8000))


async def transcribe(server: Any, s: aiohttp.ClientSession, audio: bytes, fmt: str) -> str:
    async with s.post(
        f"{server.url}/v1/stt", data=audio, params={"format": fmt}, headers=server.headers()
    ) as r:
        assert r.status == 200, await r.text()
        text: str = (await r.json())["text"]
        return text


# Whisper writes small numbers as digits or as words, as it likes ("from 9 in the morning").
_NUMBERS = dict(enumerate("zero one two three four five six seven eight nine ten".split()))


def words(text: str) -> set[str]:
    """The words of ``text``, normalized, with numbers up to ten spelled out."""
    return {_NUMBERS.get(int(w), w) if w.isdigit() else w for w in normalize(text).split()}


def word_errors(reference: str, heard: str) -> int:
    """Words substituted, dropped or added in ``heard``, both normalized."""
    found = jiwer.process_words(normalize(reference), normalize(heard) or "<nothing>")
    return int(found.substitutions + found.deletions + found.insertions)


def loudness(pcm: bytes) -> float:
    """RMS of s16le PCM."""
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def law_loudness_ratio(decoded: bytes, reference: bytes) -> float:
    """Loudness of the agent's audio (decoded with the law the call negotiated) over that of
    our TTS saying the same text as linear PCM at the same rate.

    This is the G.711 law check. Piper draws fresh noise on every synthesis, so a waveform match
    against another synthesis no longer separates the laws (about 0.5 either way), and Whisper
    transcribes μ-law decoded as A-law (and the reverse) almost as well as right. Loudness does
    separate them: the wrong law maps quiet samples, the bulk of speech, to levels about 3.5-4
    times higher (digital silence becomes a ±700-850 offset), so the ratio is about 1.0 for the
    right law and 3.5-4 for the wrong one.
    """
    return loudness(decoded) / loudness(reference)


async def stored_conversation(
    server: Any,
    s: aiohttp.ClientSession,
    agent_id: str,
    until: Callable[[str, list[tuple[str, str]]], bool] = lambda status, turns: True,
    within: float = 10.0,
) -> tuple[str, list[tuple[str, str]]]:
    """The agent's one conversation, its status and (role, text) turns, once ``until`` holds:
    turns are written behind the conversation, so a test waits for the ones it reads."""
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    async def check() -> tuple[str, list[tuple[str, str]]] | None:
        async with s.get(
            f"{server.url}/v1/convai/sessions",
            params={"agent_id": agent_id},
            headers=server.headers(),
        ) as r:
            assert r.status == 200, await r.text()
            (session,) = (await r.json())["sessions"]
        async with s.get(
            f"{server.url}/v1/convai/sessions/{session['id']}", headers=server.headers()
        ) as r:
            assert r.status == 200, await r.text()
            stored = await r.json()
        found = (stored["status"], [(t["role"], t["text"]) for t in stored["turns"]])
        seen[:] = [found]
        return found if until(*found) else None

    try:
        result: tuple[str, list[tuple[str, str]]] = await eventually(
            check, within=within, every=0.1, what="the stored conversation"
        )
    except AssertionError as failed:
        raise AssertionError(f"{failed}; stored: {seen}") from None
    return result
