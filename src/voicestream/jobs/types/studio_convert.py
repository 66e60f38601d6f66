"""The ``studio_convert`` job: a Studio project's chapters read aloud, one snapshot each.

Input: the project id, whether the whole project is converted, and the chapters' content as it
was when the conversion was asked for (so what is converted is what the caller saw, and the
reservation at submission is its exact price). Each TTS node is synthesized with its own voice
through ``jobs.speech`` and cached by voice and text: converting again after one paragraph
changed synthesizes that paragraph only.

A chapter is its nodes joined with pauses (after a paragraph ~0.5 s, after a heading ~1 s),
brought to the loudness target (-16 LUFS, -18 with ACX normalization), encoded as MP3 and saved
as a job output; a snapshot row then names it (store/studio.py). A whole-project conversion
also saves the chapters one after another as the project's snapshot. Outputs and snapshot ids
are derived from the job and the chapter, so a rerun replaces the same files and rows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any, Final, cast

from pydantic import BaseModel, ConfigDict, Field

from ...billing.prices import tts_credits
from ...errors import VoiceStreamError
from ...media.encode import StreamEncoder, make_encoder
from ...media.formats import parse_format
from ...media.loudness import LoudnessNormalizer, fit_gain_db, integrated_loudness
from ...media.resample import resample
from ...store.studio import StudioStore
from ..context import JobContext
from ..registry import InputFiles, JobOutcome
from ..speech import Speech, SpeechCache, speech_cache, synthesize
from ..studio_content import StudioBlock, StudioNode
from .scratch import ProgressReporter

__all__ = ["ConvertChapter", "StudioConvertInput", "StudioConvertJob", "snapshot_id"]

OUTPUT_FORMAT: Final = "mp3_44100_128"
_RATE: Final = 44100
ACX_TARGET_LUFS: Final = -18.0
TARGET_LUFS: Final = -16.0
# Pauses a narrator leaves: after a paragraph, after a heading, between one block's voices,
# and between chapters in the project's audio.
PARAGRAPH_PAUSE_S: Final = 0.5
HEADING_PAUSE_S: Final = 1.0
NODE_PAUSE_S: Final = 0.15
CHAPTER_PAUSE_S: Final = 1.5
HEADINGS: Final = frozenset({"h1", "h2", "h3"})
_NAMESPACE: Final = uuid.UUID("0b7f1d56-4f0e-4d38-9a61-2a3c1f1c0d19")


class ConvertChapter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chapter_id: str = Field(min_length=1, max_length=64)
    name: str
    blocks: list[StudioBlock]

    @property
    def characters(self) -> int:
        return sum(len(node.text) for block in self.blocks for node in block.nodes)


class StudioConvertInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: str = Field(min_length=1, max_length=64)
    project_name: str = ""
    whole_project: bool
    chapters: list[ConvertChapter] = Field(min_length=1)
    acx: bool = False

    @property
    def characters(self) -> int:
        return sum(chapter.characters for chapter in self.chapters)


def snapshot_id(job_id: uuid.UUID, chapter_id: str | None) -> str:
    """The snapshot a job writes for a chapter (None: the project): the same on a rerun."""
    return uuid.uuid5(_NAMESPACE, f"{job_id}/{chapter_id or ''}").hex[:20]


class _Counts:
    __slots__ = ("reused", "synthesized", "synthesized_characters")

    def __init__(self) -> None:
        self.synthesized = 0
        self.reused = 0
        self.synthesized_characters = 0


async def _speech(ctx: JobContext, cache: SpeechCache, node: StudioNode, counts: _Counts) -> Speech:
    key = SpeechCache.key(node.voice_id, node.text)
    cached = await cache.get(key)
    if cached is not None:
        counts.reused += 1
        return cached
    speech = await synthesize(ctx, node.voice_id, node.text)
    await cache.put(key, speech)
    counts.synthesized += 1
    counts.synthesized_characters += len(node.text)
    return speech


def _normalized(pieces: Sequence[bytes], target: float) -> bytes:
    """Blocking: the chapter's audio brought to ``target`` LUFS under the true-peak limiter."""
    pcm = b"".join(pieces)
    if not pcm:
        return pcm
    measured = integrated_loudness(pcm, _RATE)
    gain = fit_gain_db(measured, target, lambda: [pcm], _RATE)
    normalizer = LoudnessNormalizer(_RATE, gain)
    return normalizer.process(pcm) + normalizer.flush()


def _silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * _RATE))


def _encode_all(encoder: StreamEncoder, pcm: bytes) -> bytes:
    return encoder.encode(pcm) + encoder.finish()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_aloud(
    ctx: JobContext,
    cache: SpeechCache,
    chapter: ConvertChapter,
    counts: _Counts,
    progress: ProgressReporter,
    done: int,
    total: int,
) -> list[bytes]:
    """The chapter's nodes as PCM pieces at the output rate, with the pauses between them;
    ``done`` of ``total`` characters were read before it (for progress)."""
    pieces: list[bytes] = []
    for block in chapter.blocks:
        for position, node in enumerate(block.nodes):
            if not node.text.strip():
                continue
            speech = await _speech(ctx, cache, node, counts)
            pcm = await ctx.media_executor.run(partial(resample, speech.pcm, speech.rate, _RATE))
            if position and pieces:
                pieces.append(_silence(NODE_PAUSE_S))
            pieces.append(pcm)
            done += len(node.text)
            await progress.report(95 * done / total)
        if pieces:
            heading = block.sub_type in HEADINGS
            pieces.append(_silence(HEADING_PAUSE_S if heading else PARAGRAPH_PAUSE_S))
    return pieces


class StudioConvertJob:
    name = "studio_convert"
    input_model: type[BaseModel] = StudioConvertInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        return tts_credits(cast(StudioConvertInput, job_input).characters)

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        inp = cast(StudioConvertInput, job_input)
        if ctx.pool is None:
            raise VoiceStreamError("a studio conversion needs the database")
        studio = StudioStore(ctx.pool)
        cache = speech_cache(ctx)
        fmt = parse_format(OUTPUT_FORMAT)
        target = ACX_TARGET_LUFS if inp.acx else TARGET_LUFS
        progress = ProgressReporter(ctx)
        await progress.report(0)
        total = max(1, inp.characters)
        counts = _Counts()
        done = 0
        project_encoder: StreamEncoder | None = None
        project_mp3: list[bytes] = []
        project_seconds = 0.0
        if inp.whole_project:
            project_encoder = make_encoder(fmt, _RATE)
        chapters: list[dict[str, Any]] = []
        files: list[dict[str, Any]] = []
        project_gone = False
        for index, chapter in enumerate(inp.chapters):
            if not await studio.exists(ctx.workspace_id, inp.project_id):
                project_gone = True  # deleted meanwhile: nothing more to make
                break
            pieces = await _read_aloud(ctx, cache, chapter, counts, progress, done, total)
            done += chapter.characters
            pcm = await ctx.media_executor.run(partial(_normalized, pieces, target))
            del pieces
            seconds = round(len(pcm) / 2 / _RATE, 3)
            encoder = make_encoder(fmt, _RATE)
            mp3 = await ctx.media_executor.run(partial(_encode_all, encoder, pcm))
            if project_encoder is not None:
                gap = _silence(CHAPTER_PAUSE_S) if index else b""
                chunk = await ctx.media_executor.run(partial(project_encoder.encode, gap + pcm))
                project_mp3.append(chunk)
                project_seconds += len(gap + pcm) / 2 / _RATE
            del pcm
            saved = await ctx.files.save_output(
                f"chapter-{chapter.chapter_id}.mp3",
                fmt.content_type,
                _once(mp3),
                format=fmt.name,
                duration=seconds,
            )
            sid = snapshot_id(ctx.job_id, chapter.chapter_id)
            kept = await studio.add_snapshot(
                ctx.workspace_id,
                sid,
                project_id=inp.project_id,
                chapter_id=chapter.chapter_id,
                job_id=ctx.job_id,
                name=chapter.name,
                file_id=uuid.UUID(saved["id"]),
                duration=seconds,
                characters=chapter.characters,
            )
            if not kept:
                # Its chapter or project was deleted while it was made: no snapshot names it,
                # so nothing would ever delete it.
                await ctx.files.delete_output(uuid.UUID(saved["id"]))
                chapters.append({"chapter_id": chapter.chapter_id, "snapshot_id": None})
                continue
            files.append(saved)
            chapters.append(
                {
                    "chapter_id": chapter.chapter_id,
                    "snapshot_id": sid,
                    "file_id": saved["id"],
                    "duration": seconds,
                }
            )
        project_snapshot: str | None = None
        if project_encoder is not None and not project_gone:
            tail = await ctx.media_executor.run(project_encoder.finish)
            project_mp3.append(tail)
            duration = round(project_seconds, 3)
            saved = await ctx.files.save_output(
                "project.mp3",
                fmt.content_type,
                _once(b"".join(project_mp3)),
                format=fmt.name,
                duration=duration,
            )
            sid = snapshot_id(ctx.job_id, None)
            if await studio.add_snapshot(
                ctx.workspace_id,
                sid,
                project_id=inp.project_id,
                chapter_id=None,
                job_id=ctx.job_id,
                name=inp.project_name or "project",
                file_id=uuid.UUID(saved["id"]),
                duration=duration,
                characters=inp.characters,
            ):
                project_snapshot = sid
                files.append(saved)
            else:
                await ctx.files.delete_output(uuid.UUID(saved["id"]))
        await progress.report(100)
        credits = tts_credits(inp.characters)
        result = {
            "project_id": inp.project_id,
            "project_snapshot_id": project_snapshot,
            "project_deleted": project_gone,
            "chapters": chapters,
            "files": files,
            "characters": inp.characters,
            "synthesized": counts.synthesized,
            "reused": counts.reused,
            "loudness_target_lufs": target,
            "credits_used": credits,
        }
        return JobOutcome(result=result, credits_used=credits)
