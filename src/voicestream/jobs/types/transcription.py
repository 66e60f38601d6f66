"""The ``transcription`` job: an uploaded recording (audio or video, hours long) to text with
word timings, as JSON, SRT and WebVTT.

Input ``{"file_id", "language"?}``. The upload is copied to a scratch file (containers such as
MP4 need to seek), then decoded and resampled to 16 kHz a few seconds at a time
(media/chunked_decode.py). Whisper hears it one window of at most 30 s at a time, each window
cut at the quietest moment near its end (media/pauses.py) and run as its own job on the STT
executor (engines/windowed_transcription.py), so live streams sharing the executor are served
between windows. At most about 45 s of audio is held at once, whatever the length.

Progress: 0-5 while the upload is copied, 5-95 by decoded time, then the outputs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ...billing.prices import transcription_credits
from ...engines.catalog import EngineRegistry
from ...engines.whisper_stt import WhisperSTT
from ...engines.windowed_transcription import WINDOW_SECONDS, transcribe_windows
from ...errors import ModelNotInstalled
from ...media.chunked_decode import ChunkedDecoder
from ...media.pauses import windows_at_pauses
from ...media.subtitles import cues_from_words, to_srt, to_vtt
from ..context import JobContext
from ..registry import InputFiles, JobOutcome
from .scratch import ProgressReporter, Scratch, scratch_dir

__all__ = ["TranscriptionJob", "TranscriptionJobInput"]

# What a job reserves at submission when the file's header does not say its duration (one
# hour); otherwise it reserves that duration. The run settles the real price (started seconds
# of audio).
ESTIMATE_SECONDS: Final = 3600
_DECODE_SECONDS = 10.0  # audio decoded per executor job
# Windows are cut once this much is buffered: a full window plus the stretch the cut searches.
_BUFFER_SECONDS = WINDOW_SECONDS + 10.0
_COPY_SHARE = 5.0
_DECODE_SHARE = 90.0


class TranscriptionJobInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: UUID
    # BCP-47 or ISO 639-1 ("en", "de-DE"); omitted: detected (multilingual models) or English.
    language: str | None = Field(None, min_length=2, max_length=35)


@dataclass(slots=True)
class _Transcript:
    """Segments (one per window that held speech) and their words, seconds from the start."""

    segments: list[dict[str, Any]] = field(default_factory=list)
    words: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s["text"] for s in self.segments)


def whisper_engine(registry: EngineRegistry, language: str | None) -> WhisperSTT:
    """The Whisper engine for ``language``: the default one when it is Whisper and hears it,
    else any installed Whisper model that does, else the first (whose decode then says which
    languages it knows).

    Raises:
        ModelNotInstalled: no Whisper model at all (word timings need one).
    """
    chosen = registry.stt_for(None, language=language)
    if isinstance(chosen, WhisperSTT) and chosen.hears(language):
        return chosen
    whispers = [e for e in registry.stt_engines() if isinstance(e, WhisperSTT)]
    for engine in whispers:
        if engine.hears(language):
            return engine
    if whispers:
        return whispers[0]
    raise ModelNotInstalled(
        "transcription jobs need a Whisper model (word timings); none is installed",
        details={"param": "model"},
    )


class TranscriptionJob:
    name = "transcription"
    input_model: type[BaseModel] = TranscriptionJobInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        inp = cast(TranscriptionJobInput, job_input)
        seconds = await files.duration(inp.file_id)
        return transcription_credits(ESTIMATE_SECONDS if seconds is None else seconds)

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        inp = cast(TranscriptionJobInput, job_input)
        engine = whisper_engine(ctx.registry, inp.language)
        progress = ProgressReporter(ctx)
        await progress.report(0)
        record, chunks = await ctx.files.open_input(inp.file_id)
        # aclosing: a cancel raised at a progress checkpoint lets go of the stored object now,
        # not whenever the generator is collected.
        async with Scratch(scratch_dir(ctx.settings)) as scratch, aclosing(chunks):
            expected = max(1, record.bytes or 1)
            async for chunk in chunks:
                await scratch.write(chunk)
                await progress.report(_COPY_SHARE * min(1.0, scratch.size / expected))
            await scratch.rewind()
            decoder = await ctx.media_executor.run(
                partial(ChunkedDecoder, scratch.file, engine.sample_rate)
            )
            try:
                transcript, samples = await _transcribe(ctx, engine, decoder, inp, progress)
            finally:
                await ctx.media_executor.run(decoder.close)
        duration = round(samples / engine.sample_rate, 3)
        language = inp.language or ("en" if not engine.multilingual else None)
        # Hours of words make megabytes of text: serialized off the loop.
        outputs = await ctx.media_executor.run(partial(_outputs, transcript, language, duration))
        files = []
        for name, content_type, data, kind in outputs:
            files.append(
                await ctx.files.save_output(
                    name, content_type, _once(data), format=kind, duration=duration
                )
            )
        await progress.report(100)
        credits = transcription_credits(duration)
        result = {
            "files": files,
            "duration": duration,
            "language": language,
            "text": transcript.text,
            "words": len(transcript.words),
            "credits_used": credits,
        }
        return JobOutcome(result=result, credits_used=credits)


async def _transcribe(
    ctx: JobContext,
    engine: WhisperSTT,
    decoder: ChunkedDecoder,
    inp: TranscriptionJobInput,
    progress: ProgressReporter,
) -> tuple[_Transcript, int]:
    """Decode, cut and transcribe window by window; the transcript and the samples decoded."""
    rate = engine.sample_rate
    transcript = _Transcript()
    buffer = bytearray()
    offset = 0  # samples before buffer[0]
    while True:
        pcm = await ctx.media_executor.run(partial(decoder.read, _DECODE_SECONDS))
        ended = not pcm
        buffer += pcm
        if not buffer or (not ended and len(buffer) < _BUFFER_SECONDS * rate * 2):
            if ended:
                break
            await progress.report(_COPY_SHARE + _DECODE_SHARE * decoder.fraction_done * 0.99)
            continue
        audio = bytes(buffer)
        windows = await ctx.media_executor.run(
            partial(windows_at_pauses, audio, rate, max_seconds=WINDOW_SECONDS)
        )
        # The last window may still grow with the next chunk, unless the audio is over.
        ready = windows if ended else windows[:-1]
        results = await transcribe_windows(
            engine, audio, ready, ctx.stt_executor, language=inp.language
        )
        shift = offset / rate
        for result in results:
            text = result.transcript.text
            words = [(w.text, w.start + shift, w.end + shift) for w in result.transcript.words]
            transcript.words.extend(words)
            if text:
                transcript.segments.append(
                    {
                        "start": round(result.start + shift, 3),
                        "end": round(result.end + shift, 3),
                        "text": text,
                        "words": [
                            {"word": w, "start": round(s, 3), "end": round(e, 3)}
                            for w, s, e in words
                        ],
                    }
                )
        used = ready[-1][1] if ready else 0
        del buffer[: used * 2]
        offset += used
        await progress.report(_COPY_SHARE + _DECODE_SHARE * decoder.fraction_done * 0.99)
        if ended:
            break
    return transcript, offset + len(buffer) // 2


def _outputs(
    transcript: _Transcript, language: str | None, duration: float
) -> list[tuple[str, str, bytes, str]]:
    """``(name, content type, bytes, format)`` of the JSON, SRT and WebVTT outputs."""
    body = {
        "text": transcript.text,
        "language": language,
        "duration": duration,
        "segments": transcript.segments,
    }
    cues = cues_from_words(transcript.words)
    return [
        (
            "transcript.json",
            "application/json",
            json.dumps(body, ensure_ascii=False).encode(),
            "json",
        ),
        ("transcript.srt", "application/x-subrip", to_srt(cues).encode(), "srt"),
        ("transcript.vtt", "text/vtt", to_vtt(cues).encode(), "vtt"),
    ]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
