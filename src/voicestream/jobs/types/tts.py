"""The ``tts`` job: a long text or document read aloud into one audio file.

Input ``{"text" | "file_id", "voice"?, "format"?, "loudness"?}``. A document (plain text,
Markdown, EPUB or PDF: media/documents.py) is read chapter by chapter, each chapter through a
``TTSStream`` on the voice's own executor, like every other synthesis. The job runs in two
passes so that hours of audio never sit in memory:

1. synthesis: each clause's audio is resampled to the output rate, measured for loudness
   (media/loudness.py) and appended to a scratch file, progress 0-90 by characters spoken;
2. output: the scratch file is read back in chunks, brought to the loudness target (default
   -16 LUFS integrated, true peak at most -1 dBTP), encoded and streamed into the job's output
   file, with a chapter marker per chapter where the format has them (MP3, Ogg Opus, FLAC,
   WAV: media/chapter_marks.py), progress 90-100.

A rerun (retry, or another worker taking over) synthesizes again and replaces the same output.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Self, cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...billing.prices import tts_credits
from ...engines.tts_stream import TTSStream
from ...errors import PayloadTooLarge, TextTooLong, UnsupportedFormat, VoiceStreamError
from ...media.chapter_marks import ChapterMark, wav_chapter_chunks, wav_file_head
from ...media.documents import Chapter, Document, parse_document, text_document
from ...media.encode import StreamEncoder, make_encoder
from ...media.formats import AudioFormat, Codec, parse_format
from ...media.loudness import DEFAULT_TARGET_LUFS, LoudnessMeter
from ...media.resample import Resampler
from ..context import JobContext
from ..registry import InputFiles, JobOutcome
from .loudness_pass import MeteredScratch, Step, fit_scratch_gain, output_step, stream_output
from .scratch import ProgressReporter, Scratch, scratch_dir

__all__ = [
    "DEFAULT_JOB_FORMAT",
    "MAX_DOCUMENT_BYTES",
    "MAX_JOB_CHARACTERS",
    "TTSJob",
    "TTSJobInput",
]

DEFAULT_JOB_FORMAT: Final = "mp3_44100_128"
# A long novel is about a million characters; this bounds one job's synthesis time and price.
MAX_JOB_CHARACTERS: Final = 2_000_000
# Documents are parsed whole (a PDF or EPUB has to be); bigger uploads are refused.
MAX_DOCUMENT_BYTES: Final = 64 * 1024 * 1024
# What a document input reserves at submission when it cannot be read then (bigger than
# ESTIMATE_PARSE_BYTES, or unreadable: the run then fails on it); the run settles the real
# price (characters read), charging any excess from the available credits.
DOCUMENT_ESTIMATE_CHARACTERS: Final = 10_000
# Documents up to this size are parsed at submission, so the reservation is their characters;
# a bigger one reserves its size in bytes when it is text (UTF-8 has no fewer bytes than
# characters), else the flat figure.
ESTIMATE_PARSE_BYTES: Final = 4 * 1024 * 1024
_TEXT_KINDS: Final = ("text/", "application/markdown")
# A pause between chapters, as a narrator leaves one.
CHAPTER_GAP_SECONDS: Final = 1.5
_SYNTHESIS_SHARE = 90.0  # progress 0-90 for synthesis, 90-100 for the output pass

_EXTENSIONS: Final = {
    Codec.MP3: "mp3",
    Codec.OPUS: "ogg",
    Codec.AAC: "aac",
    Codec.FLAC: "flac",
    Codec.WAV: "wav",
    Codec.PCM: "pcm",
    Codec.ULAW: "ulaw",
    Codec.ALAW: "alaw",
}


class TTSJobInput(BaseModel):
    """``text`` or ``file_id`` (a document uploaded with ``POST /v1/files``), not both."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=MAX_JOB_CHARACTERS)
    file_id: UUID | None = None
    voice: str | None = Field(None, min_length=1, max_length=200)
    format: str = DEFAULT_JOB_FORMAT
    # Integrated loudness to normalize to, in LUFS; null keeps the voice's own level.
    loudness: float | None = Field(DEFAULT_TARGET_LUFS, ge=-40.0, le=-5.0)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        try:
            parse_format(value)
        except UnsupportedFormat as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.text is None) == (self.file_id is None):
            raise ValueError('give exactly one of "text" and "file_id"')
        if self.text is not None and not self.text.strip():
            raise ValueError("text is empty")
        return self


@dataclass(slots=True)
class _Synthesis(MeteredScratch):
    """Pass 1's state: what is on the scratch file so far, and its loudness."""

    resampler: Resampler | None = None
    marks: list[ChapterMark] = field(default_factory=list)

    def take(self, pcm: bytes, source_rate: int) -> None:
        """Blocking: one clause's audio onto the scratch file, at the output rate."""
        if self.resampler is None:
            self.resampler = Resampler(source_rate, self.rate)
        self.write(self.resampler.process(pcm))

    def silence(self, seconds: float) -> None:
        """Blocking: a pause, through the resampler so the audio stays in order."""
        if self.resampler is None:
            return  # nothing spoken yet: no pause needed
        zeros = bytes(2 * round(seconds * self.resampler.src_rate))
        self.write(self.resampler.process(zeros))

    def finish(self) -> None:
        """Blocking: the resampler's last samples."""
        if self.resampler is not None:
            self.write(self.resampler.flush())


class TTSJob:
    name = "tts"
    input_model: type[BaseModel] = TTSJobInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        inp = cast(TTSJobInput, job_input)
        if inp.text is not None:
            return tts_credits(len(inp.text))
        assert inp.file_id is not None  # the input model allows no other case
        record = await files.describe(inp.file_id)
        if record is None or record.bytes is None:
            return tts_credits(DOCUMENT_ESTIMATE_CHARACTERS)
        data = await files.read(inp.file_id, ESTIMATE_PARSE_BYTES)
        if data is not None:
            parse = partial(parse_document, data, record.content_type, record.name)
            try:
                document = await asyncio.to_thread(parse)
            except VoiceStreamError:
                return tts_credits(DOCUMENT_ESTIMATE_CHARACTERS)
            return tts_credits(min(document.characters, MAX_JOB_CHARACTERS))
        if record.content_type.startswith(_TEXT_KINDS):
            return tts_credits(min(record.bytes, MAX_JOB_CHARACTERS))
        return tts_credits(DOCUMENT_ESTIMATE_CHARACTERS)

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        inp = cast(TTSJobInput, job_input)
        fmt = parse_format(inp.format)
        engine, voice = ctx.registry.voice(inp.voice or ctx.settings.default_voice)
        progress = ProgressReporter(ctx)
        await progress.report(0)
        if inp.text is not None:
            # Up to two million characters of regex work: off the loop like any parsing.
            document = await ctx.media_executor.run(partial(text_document, inp.text))
            characters = len(inp.text)
        else:
            document = await _read_document(ctx, inp.file_id)
            characters = document.characters
        if characters > MAX_JOB_CHARACTERS:
            raise TextTooLong(
                f"the document has {characters} characters; a job reads at most "
                f"{MAX_JOB_CHARACTERS}",
                details={"characters": characters, "max_characters": MAX_JOB_CHARACTERS},
            )
        texts = [chapter.speech_text() for chapter in document.chapters]
        total = max(1, sum(len(t) for t in texts))
        async with Scratch(scratch_dir(ctx.settings)) as scratch:
            meter = LoudnessMeter(fmt.sample_rate) if inp.loudness is not None else None
            synthesis = _Synthesis(scratch, fmt.sample_rate, meter)
            executor = ctx.tts_executors[engine.name]
            done = 0
            for index, (chapter, text) in enumerate(zip(document.chapters, texts, strict=True)):
                if index:
                    await ctx.media_executor.run(partial(synthesis.silence, CHAPTER_GAP_SECONDS))
                start = synthesis.seconds
                stream = TTSStream(engine, voice, executor)
                stream.push_text(text)
                stream.end_input()
                async for chunk in stream:
                    await ctx.media_executor.run(
                        partial(synthesis.take, chunk.pcm, chunk.sample_rate)
                    )
                    spoken = done + chunk.text_offset + len(chunk.text)
                    await progress.report(_SYNTHESIS_SHARE * spoken / total)
                done += len(text)
                synthesis.marks.append(
                    ChapterMark(_title(chapter, index), start, synthesis.seconds)
                )
            await ctx.media_executor.run(synthesis.finish)
            if synthesis.marks:
                last = synthesis.marks[-1]
                synthesis.marks[-1] = ChapterMark(last.title, last.start, synthesis.seconds)
            measured = meter.integrated() if meter is not None else None
            gain = None
            if measured is not None and inp.loudness is not None:
                fit = partial(_fit_gain, synthesis, measured, inp.loudness)
                gain = await ctx.media_executor.run(fit)
            await scratch.rewind()
            duration = round(synthesis.seconds, 3)
            saved = await ctx.files.save_output(
                f"speech.{_EXTENSIONS[fmt.codec]}",
                fmt.content_type,
                _encoded(ctx, synthesis, fmt, gain, progress),
                format=fmt.name,
                duration=duration,
            )
        await progress.report(100)
        result = {
            "files": [saved],
            "duration": duration,
            "format": fmt.name,
            "voice": voice.id,
            "characters": characters,
            "chapters": [
                {"title": m.title, "start": round(m.start, 3), "end": round(m.end, 3)}
                for m in synthesis.marks
            ],
            "loudness": {
                "target_lufs": inp.loudness,
                "measured_lufs": _finite(measured),
                "gain_db": None if gain is None else round(gain, 2),
            },
            "credits_used": tts_credits(characters),
        }
        return JobOutcome(result=result, credits_used=tts_credits(characters))


def _title(chapter: Chapter, index: int) -> str:
    return chapter.title or ("Opening" if index == 0 else f"Chapter {index + 1}")


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value, 2)


async def _read_document(ctx: JobContext, file_id: UUID | None) -> Document:
    assert file_id is not None  # the input model allows no other case
    record, chunks = await ctx.files.open_input(file_id)
    parts: list[bytes] = []
    size = 0
    async with aclosing(chunks):
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                raise PayloadTooLarge(
                    f"a document for a tts job may have at most {MAX_DOCUMENT_BYTES} bytes",
                    details={"max_bytes": MAX_DOCUMENT_BYTES},
                )
            parts.append(chunk)
    data = b"".join(parts)
    parse = partial(parse_document, data, record.content_type, record.name)
    document: Document = await ctx.media_executor.run(parse)
    return document


def _fit_gain(synthesis: _Synthesis, measured: float, target: float) -> float:
    """Blocking: the gain to the target after the limiter."""
    return fit_scratch_gain(synthesis.scratch, synthesis.rate, measured, target)


def _pcm_steps(synthesis: _Synthesis, fmt: AudioFormat, gain: float | None) -> tuple[Step, bytes]:
    """The blocking step that turns the next block of the scratch file into output bytes (and
    whether that was the end), and the bytes that go before the first block."""
    encoder: StreamEncoder | None = None
    head = b""
    trailer = b""
    if fmt.codec is Codec.WAV:
        trailer = wav_chapter_chunks(synthesis.marks, synthesis.rate)
        head = wav_file_head(synthesis.rate, synthesis.samples, len(trailer))
    else:
        encoder = make_encoder(fmt, synthesis.rate, chapters=synthesis.marks)
    return output_step(synthesis.scratch, synthesis.rate, gain, encoder, trailer), head


async def _encoded(
    ctx: JobContext,
    synthesis: _Synthesis,
    fmt: AudioFormat,
    gain: float | None,
    progress: ProgressReporter,
) -> AsyncIterator[bytes]:
    step, head = await ctx.media_executor.run(partial(_pcm_steps, synthesis, fmt, gain))
    async for data in stream_output(
        ctx, synthesis.scratch, step, head, progress, start=_SYNTHESIS_SHARE
    ):
        yield data
