"""Speech for jobs that place many short pieces on a timeline (dubbing segments, studio blocks):
one text synthesized whole into memory with its word timings, and a content-addressed cache
so that a re-render synthesizes only the pieces whose text or voice changed.

The cache is a directory (``<data_dir>/speech-cache``): a worker that misses it, or another
machine with its own, just synthesizes again, so it needs no coordination. Entries are written
to a temporary name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..engines.base import Alignment
from ..engines.tts_stream import TTSStream
from ..media.tempo import Tempo
from .context import JobContext

__all__ = ["Speech", "SpeechCache", "Word", "speech_cache", "synthesize"]

Word = tuple[str, float, float]  # (word, start seconds, end seconds) in the piece's audio


@dataclass(frozen=True, slots=True)
class Speech:
    """Mono s16le ``pcm`` at ``rate``, and when each word of its text is spoken."""

    pcm: bytes
    rate: int
    words: tuple[Word, ...]

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.rate


def _words(alignment: Alignment, offset: float) -> list[Word]:
    """Characters' times grouped into whitespace-separated words, shifted by ``offset``."""
    out: list[Word] = []
    text = ""
    start = end = 0.0
    timings = zip(alignment.chars, alignment.char_start_ms, alignment.char_duration_ms, strict=True)
    for char, start_ms, duration_ms in timings:
        if char.isspace():
            if text:
                out.append((text, start, end))
                text = ""
            continue
        if not text:
            start = offset + start_ms / 1000
        text += char
        end = offset + (start_ms + duration_ms) / 1000
    if text:
        out.append((text, start, end))
    return out


async def synthesize(ctx: JobContext, voice_id: str, text: str, *, speed: float = 1.0) -> Speech:
    """``text`` spoken by ``voice_id`` at ``speed`` (raises the registry's UnknownVoice)."""
    engine, voice = ctx.registry.voice(voice_id)
    stream = TTSStream(engine, voice, ctx.tts_executors[engine.name], speed=speed)
    stream.push_text(text)
    stream.end_input()
    pieces: list[bytes] = []
    words: list[Word] = []
    rate = voice.sample_rate
    samples = 0
    async for chunk in stream:
        rate = chunk.sample_rate
        if chunk.alignment is not None:
            words.extend(_words(chunk.alignment, samples / rate))
        pieces.append(chunk.pcm)
        samples += len(chunk.pcm) // 2
    pcm = b"".join(pieces)
    if stream.tempo != 1.0:
        # What the engine could not do natively: the pitch-keeping tempo filter, with the
        # word times scaled to match.
        tempo = stream.tempo

        def apply() -> bytes:
            shifter = Tempo(rate, tempo)
            return shifter.process(pcm) + shifter.flush()

        pcm = await ctx.media_executor.run(apply)
        words = [(w, s / tempo, e / tempo) for w, s, e in words]
    return Speech(pcm, rate, tuple(words))


class SpeechCache:
    """Synthesized pieces by content key, on local disk."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @staticmethod
    def key(*parts: object) -> str:
        """A key for everything that decides the audio (engine, voice, text, speed, ...)."""
        blob = json.dumps([str(part) for part in parts], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self._root / key[:2]
        return folder / f"{key}.pcm", folder / f"{key}.json"

    async def get(self, key: str) -> Speech | None:
        return await asyncio.to_thread(self._get, key)

    async def put(self, key: str, speech: Speech) -> None:
        await asyncio.to_thread(self._put, key, speech)

    def _get(self, key: str) -> Speech | None:
        audio, meta = self._paths(key)
        try:
            info = json.loads(meta.read_text())
            pcm = audio.read_bytes()
        except (OSError, ValueError):
            return None
        if len(pcm) != info.get("bytes"):
            return None  # an entry being replaced right now: synthesize instead
        words = tuple((str(w), float(s), float(e)) for w, s, e in info["words"])
        return Speech(pcm, int(info["rate"]), words)

    def _put(self, key: str, speech: Speech) -> None:
        audio, meta = self._paths(key)
        audio.parent.mkdir(parents=True, exist_ok=True)
        info = {"rate": speech.rate, "bytes": len(speech.pcm), "words": list(speech.words)}
        # The metadata goes last: its presence (with the matching size) marks a whole entry.
        _atomic_write(audio, speech.pcm)
        _atomic_write(meta, json.dumps(info).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def speech_cache(ctx: JobContext) -> SpeechCache:
    """The cache every job of this process shares."""
    return SpeechCache(ctx.settings.data_dir / "speech-cache")
