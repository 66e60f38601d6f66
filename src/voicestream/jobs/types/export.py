"""The ``export`` job: a studio project's version rendered to one audio file, or to an mp4
under the project's video, with SRT and VTT sidecars at the real spoken times.

Input ``{"project_id", "version"?, "format", "loudness"?}``; ``version`` None renders the version
that is current when the job runs (``POST /v1/projects/{id}/exports`` always names one). The
version is read from the project store (versions never change, so a rerun renders the same
timeline). ``format`` is ``mp3``, ``wav``, ``pcm``, ``flac`` or ``mp4``, or a full format name
(``mp3_44100_128``); ``loudness`` defaults to the project's ``settings.loudness_lufs``.

The run:

1. speech: each TTS block through ``jobs.speech.synthesize``, looked up first in the
   ``SpeechCache`` by (voice, text, speed), so a render after a one-block edit synthesizes that
   block only (``result["blocks"]``); audio assets decoded from the file store at the mix rate;
2. the mix (media/mixing.py: voice tracks duck music and effects) onto a scratch file, measured
   for loudness as it goes, then the gain to the target fitted past the true-peak limiter
   (media/loudness.py), as the ``tts`` job does;
3. output: encoded from the scratch file, or for mp4 muxed under the video with the video
   stream copied packet for packet (media/muxing.py); subtitles from the blocks' word times.

Every output is saved under a fixed name, so a rerun replaces what an earlier attempt wrote.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final, cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...billing.prices import tts_credits
from ...errors import UnsupportedFormat, ValidationFailed
from ...media import mixing
from ...media.chapter_marks import wav_file_head
from ...media.chunked_decode import ChunkedDecoder
from ...media.encode import StreamEncoder, make_encoder
from ...media.formats import AudioFormat, Codec, parse_format
from ...media.loudness import LoudnessMeter
from ...media.muxing import MuxAudio, mux_under_video
from ...media.resample import Resampler
from ...media.subtitles import cues_from_words, to_srt, to_vtt
from ...projects.timeline import AudioClip, Timeline, TTSClip
from ...store.projects import ProjectRepository
from ..context import JobContext
from ..registry import InputFiles, JobOutcome
from ..speech import Speech, SpeechCache, Word, speech_cache, synthesize
from .loudness_pass import MeteredScratch, fit_scratch_gain, output_step, stream_output
from .scratch import ProgressReporter, Scratch, scratch_dir

__all__ = ["ExportInput", "ExportJob", "check_exportable", "output_format"]

MP4: Final = "mp4"
_SHORT_NAMES: Final = ("mp3", "wav", "pcm", "flac", MP4)
_MP4_RATE: Final = 48000
_DEFAULT_RATE: Final = 44100
_FLAC_RATES: Final = (16000, 22050, 24000, 44100, 48000)
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
_MIX_BLOCK_SECONDS: Final = 5.0
_DOWNLOAD_CHUNK: Final = 1024 * 1024
_ESTIMATE_CHARACTERS: Final = 1000
# Progress: speech 0-60, assets 60-70, mix 70-85, output 85-100.
_SPEECH_SHARE, _ASSET_SHARE, _MIX_SHARE = 60.0, 70.0, 85.0


def output_format(name: str, sample_rate: int | None) -> AudioFormat | None:
    """The audio format ``name`` means (None for mp4), a short name at the project's rate."""
    rate = sample_rate or _DEFAULT_RATE
    match name:
        case "mp4":
            return None
        case "mp3":
            return parse_format("mp3_44100_128")
        case "wav" | "pcm":
            return parse_format(f"{name}_{rate}")
        case "flac":
            return parse_format(f"flac_{rate if rate in _FLAC_RATES else _DEFAULT_RATE}")
    return parse_format(name)


class ExportInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: UUID
    version: int | None = Field(None, ge=1)
    format: str = "mp3"
    # Integrated loudness in LUFS; None: the project's settings.loudness_lufs.
    loudness: float | None = Field(None, ge=-40.0, le=-5.0)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value in _SHORT_NAMES:
            return value
        try:
            parse_format(value)
        except UnsupportedFormat as exc:
            raise ValueError(f"{exc}; or one of {', '.join(_SHORT_NAMES)}") from None
        return value


def check_exportable(timeline: Timeline, format_name: str) -> None:
    """ValidationFailed (422) for an export the timeline cannot make."""
    if next(timeline.clips(), None) is None:
        raise ValidationFailed(
            "the timeline has no clips: add a TTS block or an audio clip before exporting"
        )
    if format_name == MP4 and timeline.video_asset is None:
        raise ValidationFailed(
            "an mp4 export needs a video: set the project's video_asset (a file uploaded "
            "with POST /v1/files), or export to an audio format",
            details={"fields": [{"field": "format", "message": "mp4 needs a video_asset"}]},
        )


async def _timeline(ctx: JobContext, inp: ExportInput) -> tuple[Timeline, int]:
    if ctx.pool is None:
        raise RuntimeError("the export job needs the database (JobContext.pool)")
    projects = ProjectRepository(ctx.pool)
    version = inp.version
    if version is None:
        version = (await projects.get(ctx.workspace_id, inp.project_id)).version
    found = await projects.version(ctx.workspace_id, inp.project_id, version)
    return Timeline.model_validate(found.timeline), version


class ExportJob:
    name = "export"
    input_model: type[BaseModel] = ExportInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        # The timeline is read when the job runs: a flat reservation, and the run settles
        # the characters it synthesized (cached blocks are free).
        return tts_credits(_ESTIMATE_CHARACTERS)

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        inp = cast(ExportInput, job_input)
        timeline, version = await _timeline(ctx, inp)
        check_exportable(timeline, inp.format)
        fmt = output_format(inp.format, timeline.settings.sample_rate)
        rate = fmt.sample_rate if fmt is not None else timeline.settings.sample_rate or _MP4_RATE
        target = inp.loudness if inp.loudness is not None else timeline.settings.loudness_lufs
        progress = ProgressReporter(ctx)
        await progress.report(0)
        speech = await _speech(ctx, timeline, rate, progress)
        async with Scratch(scratch_dir(ctx.settings)) as scratch:
            assets = await _assets(ctx, timeline, rate, progress)
            tracks = _tracks(timeline, speech, assets, rate)
            meter = LoudnessMeter(rate)
            rendered = MeteredScratch(scratch, rate, meter)
            await _mix(ctx, tracks, rendered, progress)
            measured = meter.integrated()
            fit = partial(fit_scratch_gain, scratch, rate, measured, target)
            gain = await ctx.media_executor.run(fit)
            await scratch.rewind()
            duration = round(rendered.seconds, 3)
            if fmt is None:
                saved = await _save_mp4(ctx, timeline, rendered, gain, progress)
                format_name = MP4
            else:
                saved = await ctx.files.save_output(
                    f"export.{_EXTENSIONS[fmt.codec]}",
                    fmt.content_type,
                    _encoded(ctx, rendered, fmt, gain, progress),
                    format=fmt.name,
                    duration=duration,
                )
                format_name = fmt.name
        srt, vtt = _subtitles(timeline, speech)
        sidecars = [
            await ctx.files.save_output(
                "export.srt", "application/x-subrip", _once(srt.encode()), format="srt",
                duration=duration,
            ),
            await ctx.files.save_output(
                "export.vtt", "text/vtt", _once(vtt.encode()), format="vtt", duration=duration
            ),
        ]  # fmt: skip
        await progress.report(100)
        spoken = sum(len(s.text) for s in speech.values() if s.synthesized)
        credits = tts_credits(spoken)
        result = {
            "files": [saved, *sidecars],
            "project_id": str(inp.project_id),
            "version": version,
            "format": format_name,
            "duration": duration,
            "sample_rate": rate,
            "blocks": {
                "synthesized": sum(1 for s in speech.values() if s.synthesized),
                "reused": sum(1 for s in speech.values() if not s.synthesized),
            },
            "loudness": {
                "target_lufs": target,
                "measured_lufs": _finite(measured),
                "gain_db": round(gain, 2),
            },
            "credits_used": credits,
        }
        return JobOutcome(result=result, credits_used=credits)


@dataclass(frozen=True, slots=True)
class _Block:
    """A TTS block's speech at the mix rate, and its words on the timeline."""

    text: str
    pcm: bytes
    words: tuple[Word, ...]
    synthesized: bool  # False: from the cache


async def _speech(
    ctx: JobContext, timeline: Timeline, rate: int, progress: ProgressReporter
) -> dict[str, _Block]:
    cache: SpeechCache = speech_cache(ctx)
    blocks = list(timeline.tts_clips())
    out: dict[str, _Block] = {}
    for index, (_, clip) in enumerate(blocks):
        speed = clip.settings.speed or 1.0
        key = SpeechCache.key(clip.voice_id, clip.text, speed)
        found = await cache.get(key)
        synthesized = found is None
        if found is None:
            found = await synthesize(ctx, clip.voice_id, clip.text, speed=speed)
            await cache.put(key, found)
        pcm = await ctx.media_executor.run(partial(_resampled, found, rate))
        words = tuple((w, clip.start + s, clip.start + e) for w, s, e in found.words)
        out[clip.id] = _Block(clip.text, pcm, words, synthesized)
        await progress.report(_SPEECH_SHARE * (index + 1) / max(1, len(blocks)))
    return out


def _resampled(speech: Speech, rate: int) -> bytes:
    if speech.rate == rate or not speech.pcm:
        return speech.pcm
    resampler = Resampler(speech.rate, rate)
    return resampler.process(speech.pcm) + resampler.flush()


async def _download(ctx: JobContext, file_id: UUID, directory: Path) -> Path:
    """The file's bytes in a temporary file under ``directory`` (the caller deletes it)."""
    _, chunks = await ctx.files.open_input(file_id)
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    fd, name = await asyncio.to_thread(tempfile.mkstemp, dir=directory, prefix="asset-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            async with aclosing(chunks):
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return path


def _decode(path: Path, rate: int) -> bytes:
    """Blocking: the whole file as mono s16le at ``rate`` (bounded by the decoder's limit)."""
    with path.open("rb") as file:
        decoder = ChunkedDecoder(file, rate)
        try:
            parts = []
            while piece := decoder.read(_MIX_BLOCK_SECONDS):
                parts.append(piece)
        finally:
            decoder.close()
    return b"".join(parts)


async def _assets(
    ctx: JobContext, timeline: Timeline, rate: int, progress: ProgressReporter
) -> dict[UUID, bytes]:
    ids = list(dict.fromkeys(c.file_id for _, c in timeline.clips() if isinstance(c, AudioClip)))
    decoded: dict[UUID, bytes] = {}
    directory = scratch_dir(ctx.settings)
    for index, file_id in enumerate(ids):
        path = await _download(ctx, file_id, directory)
        try:
            decoded[file_id] = await ctx.media_executor.run(partial(_decode, path, rate))
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        share = _SPEECH_SHARE + (_ASSET_SHARE - _SPEECH_SHARE) * (index + 1) / len(ids)
        await progress.report(share)
    return decoded


def _cut(pcm: bytes, rate: int, clip: AudioClip) -> bytes:
    first = round((clip.trim_start or 0.0) * rate) * 2
    if clip.duration is None:
        return pcm[first:]
    return pcm[first : first + round(clip.duration * rate) * 2]


def _tracks(
    timeline: Timeline, speech: dict[str, _Block], assets: dict[UUID, bytes], rate: int
) -> list[mixing.Track]:
    tracks = []
    for track in timeline.tracks:
        clips = []
        for clip in track.clips:
            if isinstance(clip, TTSClip):
                pcm = speech[clip.id].pcm
            else:
                pcm = _cut(assets[clip.file_id], rate, clip)
            clips.append(mixing.Clip(pcm, clip.start, clip.gain_db, clip.fade_in, clip.fade_out))
        tracks.append(
            mixing.Track(
                clips=clips,
                kind=track.kind,
                gain_db=track.gain_db,
                duck_db=track.effective_duck_db,
            )
        )
    return tracks


async def _mix(
    ctx: JobContext,
    tracks: list[mixing.Track],
    rendered: MeteredScratch,
    progress: ProgressReporter,
) -> None:
    """Pass 1: the mix onto the scratch file a block at a time, off the loop, with progress
    (each report a cancel checkpoint) between blocks."""
    blocks: Iterator[bytes] = await ctx.media_executor.run(
        partial(mixing.mix, tracks, rendered.rate, block_seconds=_MIX_BLOCK_SECONDS)
    )
    total = max((c.start + len(c.pcm) / 2 / rendered.rate for t in tracks for c in t.clips),
                default=0.0)  # fmt: skip

    def step() -> bool:
        block = next(blocks, None)
        if block is None:
            return False
        rendered.write(block)
        return True

    while await ctx.media_executor.run(step):
        done = rendered.seconds / total if total else 1.0
        await progress.report(_ASSET_SHARE + (_MIX_SHARE - _ASSET_SHARE) * min(1.0, done))


async def _encoded(
    ctx: JobContext,
    rendered: MeteredScratch,
    fmt: AudioFormat | None,
    gain: float,
    progress: ProgressReporter,
) -> AsyncIterator[bytes]:
    """The normalized mix from the scratch file, encoded as ``fmt`` (None: PCM, for muxing)."""
    head = b""
    encoder: StreamEncoder | None = None
    if fmt is not None and fmt.codec is Codec.WAV:
        # The exact size up front: the samples are all known by now.
        head = wav_file_head(rendered.rate, rendered.samples, 0)
    elif fmt is not None:
        encoder = await ctx.media_executor.run(partial(make_encoder, fmt, rendered.rate))
    step = output_step(rendered.scratch, rendered.rate, gain, encoder)
    async for data in stream_output(ctx, rendered.scratch, step, head, progress, start=_MIX_SHARE):
        yield data


async def _save_mp4(
    ctx: JobContext,
    timeline: Timeline,
    rendered: MeteredScratch,
    gain: float,
    progress: ProgressReporter,
) -> dict[str, object]:
    """The mix muxed under the project's video (its video stream copied, not re-encoded)."""
    assert timeline.video_asset is not None  # the input model allows no other case
    pcm = b"".join([piece async for piece in _encoded(ctx, rendered, None, gain, progress)])
    directory = scratch_dir(ctx.settings)
    video = await _download(ctx, timeline.video_asset.file_id, directory)
    out = video.with_suffix(".mp4")
    try:
        mux = partial(mux_under_video, video, [MuxAudio(pcm, rendered.rate)], out)
        await ctx.media_executor.run(mux)
        return await ctx.files.save_output(
            "export.mp4", "video/mp4", _file_chunks(out), format=MP4,
            duration=round(rendered.seconds, 3),
        )  # fmt: skip
    finally:
        await asyncio.to_thread(video.unlink, missing_ok=True)
        await asyncio.to_thread(out.unlink, missing_ok=True)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with await asyncio.to_thread(path.open, "rb") as file:
        while chunk := await asyncio.to_thread(file.read, _DOWNLOAD_CHUNK):
            yield chunk


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _subtitles(timeline: Timeline, speech: dict[str, _Block]) -> tuple[str, str]:
    """SRT and VTT of every TTS block at the times its words are spoken in the export."""
    words: list[Word] = sorted(
        (word for _, clip in timeline.tts_clips() for word in speech[clip.id].words),
        key=lambda word: word[1],
    )
    cues = cues_from_words(words)
    return to_srt(cues), to_vtt(cues)


def _finite(value: float) -> float | None:
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value, 2)
