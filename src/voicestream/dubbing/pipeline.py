"""The dubbing pipeline's entry points: ``analyse`` a source into a ``DubPlan``, ``render`` one
language of a plan (dubbing/render.py), and the source language's subtitles.

``analyse`` reads the source like the transcription job does (media/chunked_decode.py at
Whisper's rate, a few seconds at a time, windows cut at pauses, each window its own job on the
STT executor), so an hour of video never sits in memory: per window it keeps the segments
(dubbing/segmentation.py) and the pitch of its voiced frames, nothing else.

Speakers: no diarization model ships, so every segment is given to one speaker, and the plan's
notes say so (rather than inventing speakers) whatever ``num_speakers`` asked for. A supplied
CSV brings its own speakers.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Final

from ..engines.whisper_stt import WhisperSTT
from ..engines.windowed_transcription import WINDOW_SECONDS, transcribe_windows
from ..errors import InvalidAudio, TranslationUnavailable, ValidationFailed
from ..jobs.context import JobContext
from ..media.chunked_decode import ChunkedDecoder
from ..media.muxing import probe
from ..media.pauses import windows_at_pauses
from ..media.subtitles import Cue, to_srt, to_vtt
from .languages import check_language, language_name
from .model import DubOptions, DubPlan, DubSegment, DubSpeaker
from .render import RenderedLanguage, render
from .segmentation import RawSegment, pitch_frames, refine_edges, segments_from_words
from .translation import SuppliedLine, Translator
from .voices import choose_voice

__all__ = [
    "RenderedLanguage",
    "analyse",
    "map_cues",
    "render",
    "source_subtitles",
]

_DECODE_SECONDS: Final = 10.0
_BUFFER_SECONDS: Final = WINDOW_SECONDS + 10.0
_ONE_SPEAKER: Final = "speaker_0"


@dataclass(slots=True)
class _Heard:
    """What one pass over the source audio found."""

    segments: list[RawSegment] = field(default_factory=list)
    pitch: list[tuple[float, float]] = field(default_factory=list)  # (time, F0)


class _Span:
    """Progress from ``lo`` to ``hi`` percent of the caller's job."""

    def __init__(self, ctx: JobContext, span: tuple[float, float]) -> None:
        self._ctx = ctx
        self.lo, self.hi = span

    async def report(self, fraction: float) -> None:
        share = max(0.0, min(1.0, fraction))
        await self._ctx.progress(self.lo + (self.hi - self.lo) * share)


def _source_language(options: DubOptions, engine: WhisperSTT) -> str:
    asked = options.source_language
    if asked and asked.lower() != "auto":
        return check_language(asked)
    if not engine.multilingual:
        return "en"  # the only language the installed Whisper model hears
    raise ValidationFailed(
        "give the source language (source_lang): this server does not detect it for dubbing",
        details={"param": "source_lang"},
    )


def _open_decoder(source: Path, rate: int) -> tuple[IO[bytes], ChunkedDecoder]:
    file = source.open("rb")
    try:
        return file, ChunkedDecoder(file, rate)
    except BaseException:
        file.close()
        raise


async def _listen(
    ctx: JobContext,
    source: Path,
    engine: WhisperSTT,
    language: str,
    options: DubOptions,
    *,
    transcribe: bool,
    progress: _Span,
) -> _Heard:
    """Segments (when ``transcribe``) and voiced-frame pitch of the source between
    ``options.start_time`` and ``options.end_time``."""
    rate = engine.sample_rate
    first = round((options.start_time or 0.0) * rate)
    last = None if options.end_time is None else round(options.end_time * rate)
    heard = _Heard()
    file, decoder = await ctx.media_executor.run(partial(_open_decoder, source, rate))
    try:
        buffer = bytearray()
        decoded = 0  # samples decoded so far
        offset = first  # the timeline sample of buffer[0]
        while True:
            pcm = await ctx.media_executor.run(partial(decoder.read, _DECODE_SECONDS))
            ended = not pcm
            begin, decoded = decoded, decoded + len(pcm) // 2
            # Only the part inside [first, last) counts.
            lo = max(0, first - begin)
            hi = len(pcm) // 2 if last is None else min(len(pcm) // 2, last - begin)
            if hi > lo:
                buffer += pcm[lo * 2 : hi * 2]
            if last is not None and decoded >= last:
                ended = True
            if not buffer or (not ended and len(buffer) < _BUFFER_SECONDS * rate * 2):
                if ended:
                    break
                await progress.report(decoder.fraction_done * 0.99)
                continue
            audio = bytes(buffer)
            windows = await ctx.media_executor.run(
                partial(windows_at_pauses, audio, rate, max_seconds=WINDOW_SECONDS)
            )
            ready = windows if ended else windows[:-1]
            shift = offset / rate
            if transcribe:
                results = await transcribe_windows(
                    engine, audio, ready, ctx.stt_executor, language=language
                )
                for (w_first, w_last), result in zip(ready, results, strict=True):
                    spoken = result.transcript.words
                    words = [(w.text, w.start + shift, w.end + shift) for w in spoken]
                    found = segments_from_words(words)
                    window = audio[w_first * 2 : w_last * 2]
                    refine = partial(refine_edges, found, window, rate, shift + w_first / rate)
                    heard.segments.extend(await ctx.media_executor.run(refine))
            used = ready[-1][1] if ready else 0
            heard.pitch.extend(
                await ctx.media_executor.run(partial(pitch_frames, audio[: used * 2], rate, shift))
            )
            del buffer[: used * 2]
            offset += used
            await progress.report(decoder.fraction_done * 0.99)
            if ended:
                break
    finally:
        await ctx.media_executor.run(decoder.close)
        await ctx.media_executor.run(file.close)
    return heard


def _median_pitch(
    pitch: Sequence[tuple[float, float]], spans: Sequence[tuple[float, float]]
) -> float | None:
    """Median F0 of the voiced frames inside any of ``spans`` (sorted by start)."""
    values: list[float] = []
    ordered = sorted(spans)
    index = 0
    for time, f0 in pitch:  # both in time order: one merge-like walk
        while index < len(ordered) and ordered[index][1] < time:
            index += 1
        if index < len(ordered) and ordered[index][0] <= time:
            values.append(f0)
    return round(statistics.median(values), 1) if values else None


def map_cues(segments: Sequence[DubSegment], cues: Sequence[Cue]) -> dict[str, str]:
    """Each cue's text given to the segment it overlaps most (cues in order, joined by a
    space); segments no cue overlaps are left out."""
    texts: dict[str, list[str]] = {}
    for cue in cues:
        best: DubSegment | None = None
        best_overlap = 0.0
        for segment in segments:
            overlap = min(cue.end, segment.end) - max(cue.start, segment.start)
            if overlap > best_overlap:
                best, best_overlap = segment, overlap
        if best is not None and cue.text.strip():
            texts.setdefault(best.id, []).append(" ".join(cue.text.split()))
    return {segment_id: " ".join(parts) for segment_id, parts in texts.items()}


def _segment_id(index: int) -> str:
    return f"seg_{index:04d}"


async def analyse(
    ctx: JobContext,
    source: Path,
    options: DubOptions,
    *,
    supplied: list[SuppliedLine] | None = None,
    supplied_subtitles: dict[str, list[Cue]] | None = None,
    translator: Translator | None = None,
    progress_span: tuple[float, float] = (0.0, 100.0),
) -> DubPlan:
    """The plan for dubbing ``source``: segments, speakers with a voice per target language,
    and every target language's text.

    Raises:
        ValidationFailed: an unknown language, bad start/end times;
            TranslationUnavailable (code ``translation_unavailable``) for a target in
            another language with neither a supplied translation nor a translator.
        InvalidAudio: not media, or no audio stream.
        UnsupportedLanguage: no installed voice speaks a target language.
        UnknownVoice: a voice the caller chose is not installed.
        EngineError: the translator failed.
    """
    targets = list(dict.fromkeys(check_language(t) for t in options.target_languages))
    if not targets:
        raise ValidationFailed(
            "give at least one target language", details={"param": "target_lang"}
        )
    if (
        options.start_time is not None
        and options.end_time is not None
        and options.end_time <= options.start_time
    ):
        raise ValidationFailed("end_time must be after start_time", details={"param": "end_time"})
    _check_translatable(targets, options, supplied, supplied_subtitles, translator)
    progress = _Span(ctx, progress_span)
    await progress.report(0)
    info = await ctx.media_executor.run(partial(probe, source))
    if not info.has_audio:
        raise InvalidAudio("the file has no audio stream: there is no speech to dub")
    # Imported here: jobs.types registers every job type on import, the dubbing job (which
    # imports this module) among them.
    from ..jobs.types.transcription import whisper_engine

    asked = options.source_language
    engine = whisper_engine(ctx.registry, None if asked in (None, "auto") else asked)
    source_language = _source_language(options, engine)
    for voice_id in options.voices.values():
        ctx.registry.voice(voice_id)  # raises UnknownVoice before any decoding is done
    heard = await _listen(
        ctx,
        source,
        engine,
        source_language,
        options,
        transcribe=supplied is None,
        progress=_Span(ctx, (progress.lo, progress.lo + (progress.hi - progress.lo) * 0.85)),
    )
    notes: list[str] = []
    if supplied is not None:
        segments = [
            DubSegment(
                id=_segment_id(i),
                start=line.start,
                end=line.end,
                speaker_id=line.speaker,
                text=line.text,
            )
            for i, line in enumerate(sorted(supplied, key=lambda x: x.start))
        ]
        speaker_ids = list(dict.fromkeys(s.speaker_id for s in segments))
    else:
        segments = [
            DubSegment(
                id=_segment_id(i), start=s.start, end=s.end, speaker_id=_ONE_SPEAKER, text=s.text
            )
            for i, s in enumerate(heard.segments)
        ]
        speaker_ids = [_ONE_SPEAKER]
        if options.num_speakers > 1:
            notes.append(
                f"{options.num_speakers} speakers were asked for, but no diarization model is "
                "installed: every segment is given to one speaker (speaker_0)"
            )
        else:
            notes.append("no diarization model is installed: one speaker (speaker_0)")
        if not segments:
            notes.append("no speech was found in the source")
    speakers: list[DubSpeaker] = []
    for speaker_id in speaker_ids:
        spans = [(s.start, s.end) for s in segments if s.speaker_id == speaker_id]
        pitch = _median_pitch(heard.pitch, spans)
        voices: dict[str, str] = {}
        for target in targets:
            chosen = options.voices.get(speaker_id)
            voices[target] = chosen or choose_voice(ctx.registry, target, pitch).id
        speakers.append(DubSpeaker(id=speaker_id, voices=voices, pitch_hz=pitch))
    by_start = sorted(supplied, key=lambda x: x.start) if supplied is not None else None
    for target in targets:
        await _translate(
            segments,
            source_language,
            target,
            csv_lines=by_start if target == _first_foreign(targets, source_language) else None,
            cues=(supplied_subtitles or {}).get(target),
            translator=translator,
            notes=notes,
        )
    await progress.report(1.0)
    return DubPlan(
        source_language=source_language,
        duration=round(info.duration, 3),
        has_video=info.has_video,
        segments=segments,
        speakers=speakers,
        notes=notes,
    )


def _check_translatable(
    targets: Sequence[str],
    options: DubOptions,
    supplied: list[SuppliedLine] | None,
    subtitles: dict[str, list[Cue]] | None,
    translator: Translator | None,
) -> None:
    """Fails before any decoding when a target in another language can get no text at all
    (the source language is known only when given; "auto" is English, see
    ``_source_language``)."""
    if translator is not None:
        return
    asked = options.source_language
    source = "en" if asked in (None, "auto") else check_language(asked)
    for target in targets:
        if target == source or (subtitles and target in subtitles):
            continue
        if supplied is not None and target == _first_foreign(targets, source):
            if all(line.translation or not line.text for line in supplied):
                continue
        raise _unavailable(target, source)


def _unavailable(target: str, source: str) -> TranslationUnavailable:
    return TranslationUnavailable(
        f"no translator is configured and no {language_name(target)} ({target}) "
        f"translation was supplied: give a CSV or {target} subtitles, or configure "
        "VOICESTREAM_TRANSLATION_BASE_URL and VOICESTREAM_TRANSLATION_MODEL",
        details={"language": target, "source_language": source},
    )


def _first_foreign(targets: Sequence[str], source: str) -> str | None:
    """The target a CSV's one translation column is for: ElevenLabs dubs one language per
    CSV, the first that is not the source's."""
    return next((t for t in targets if t != source), None)


async def _translate(
    segments: list[DubSegment],
    source: str,
    target: str,
    *,
    csv_lines: Sequence[SuppliedLine] | None,
    cues: Sequence[Cue] | None,
    translator: Translator | None,
    notes: list[str],
) -> None:
    """Sets ``segment.translations[target]`` on every segment: the text itself for the source
    language, else supplied text (CSV, then subtitles), else the translator's."""
    if target == source:
        for segment in segments:
            segment.translations[target] = segment.text
        return
    given: dict[str, str] = {}
    if csv_lines is not None:
        given = {
            segment.id: line.translation
            for segment, line in zip(segments, csv_lines, strict=True)
            if line.translation
        }
    if cues is not None:
        mapped = map_cues(segments, cues)
        given.update({k: v for k, v in mapped.items() if k not in given})
        if cues and not translator:
            silent = [s.id for s in segments if s.id not in given and s.text]
            if silent:
                notes.append(
                    f"{len(silent)} segment(s) have no {target} subtitle over them and stay "
                    f"silent in {target}: {', '.join(silent[:10])}"
                )
                given.update({segment_id: "" for segment_id in silent})
    missing = [s for s in segments if s.id not in given and s.text.strip()]
    if missing:
        if translator is None:
            raise _unavailable(target, source)
        lines = await translator.translate([s.text for s in missing], source, target)
        given.update({s.id: line for s, line in zip(missing, lines, strict=True)})
    for segment in segments:
        segment.translations[target] = given.get(segment.id, "")


def source_subtitles(plan: DubPlan) -> tuple[str, str]:
    """``(srt, vtt)`` of the source language at the source's timings."""
    cues = [Cue(s.start, s.end, s.text) for s in plan.segments if s.text.strip()]
    return to_srt(cues), to_vtt(cues)
