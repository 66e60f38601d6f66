"""One language of a dub: every segment spoken, fitted to its slot, mixed, normalized, muxed.

Each segment's speech comes from the ``SpeechCache`` when the same voice said the same text
before (an edit re-synthesizes only the segments it changed), is time-fitted to the source
segment (media/time_fit.py: 0.8-1.25x tempo, then the following pause, never over the next
segment) and placed where the source segment starts. Under it: the caller's background track,
or the source audio ducked by ``DUCK_DB`` while the dub speaks (no source-separation model
ships, so the original voices stay audible underneath, quieter), or nothing with
``drop_background_audio``. The mix is brought to -16 LUFS and, for a video, muxed under the
source's video stream (copied, not re-encoded) with the original audio as a second track.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

from ..errors import ValidationFailed
from ..jobs.context import JobContext
from ..jobs.speech import Speech, SpeechCache, Word, synthesize
from ..media.chunked_decode import ChunkedDecoder
from ..media.encode import make_encoder
from ..media.formats import parse_format
from ..media.loudness import (
    DEFAULT_TARGET_LUFS,
    LoudnessNormalizer,
    integrated_loudness,
    normalization_gain_db,
)
from ..media.mixing import Clip, Track, mix_all
from ..media.muxing import MuxAudio, mux_under_video
from ..media.resample import resample
from ..media.subtitles import Cue, cues_from_words, to_srt, to_vtt
from ..media.time_fit import fit_to_slot
from .languages import check_language
from .model import DubOptions, DubPlan, DubSegment
from .voices import choose_voice

__all__ = ["DUCK_DB", "VIDEO_MIX_RATE", "RenderedLanguage", "render"]

DUCK_DB: Final = -18.0
VIDEO_MIX_RATE: Final = 48_000  # AAC in MP4, as video editors expect it
_DECODE_SECONDS: Final = 30.0
_SYNTH_SHARE: Final = 0.8  # of the render's progress; the mix and the output take the rest


@dataclass
class RenderedLanguage:
    language: str
    media: Path  # mp4 (video source) or an audio file in options.output_format
    media_format: str  # "mp4" | the audio format's name
    content_type: str
    duration: float
    srt: str  # target-language subtitles at the dubbed timings
    vtt: str
    synthesized: int  # segments synthesized this render
    reused: int  # segments taken from the SpeechCache


def _decode_all(path: Path, rate: int) -> bytes:
    """Blocking: a file's first audio stream as mono s16le at ``rate``."""
    with path.open("rb") as file:
        decoder = ChunkedDecoder(file, rate)
        try:
            pieces: list[bytes] = []
            while chunk := decoder.read(_DECODE_SECONDS):
                pieces.append(chunk)
            return b"".join(pieces)
        finally:
            decoder.close()


def _voice_for(
    ctx: JobContext, plan: DubPlan, segment: DubSegment, language: str, options: DubOptions
) -> str:
    """Segment override, then the speaker's voice, then the caller's per-speaker choice,
    else one chosen now (a language added after the analysis)."""
    if language in segment.voices:
        return segment.voices[language]
    speaker = next((s for s in plan.speakers if s.id == segment.speaker_id), None)
    if speaker is not None and language in speaker.voices:
        return speaker.voices[language]
    if segment.speaker_id in options.voices:
        return options.voices[segment.speaker_id]
    pitch = speaker.pitch_hz if speaker is not None else None
    return choose_voice(ctx.registry, language, pitch).id


def _text_for(plan: DubPlan, segment: DubSegment, language: str) -> str:
    if language in segment.translations:
        return segment.translations[language].strip()
    return segment.text.strip() if language == plan.source_language else ""


async def _speech(
    ctx: JobContext, cache: SpeechCache, voice_id: str, language: str, text: str
) -> tuple[Speech, bool]:
    """The segment's speech and whether it was synthesized now (False: from the cache)."""
    engine, voice = ctx.registry.voice(voice_id)
    key = cache.key(engine.name, voice.id, language, text, 1.0)
    cached = await cache.get(key)
    if cached is not None:
        return cached, False
    speech = await synthesize(ctx, voice.id, text)
    await cache.put(key, speech)
    return speech, True


def _fit(
    speech: Speech, rate: int, start: float, end: float, next_start: float | None
) -> tuple[bytes, float, float, list[Word]]:
    """Blocking: the speech fitted to its slot, at the mix rate; its real start and end, and
    its words at their times on the dub's timeline (those cut off by a truncation dropped)."""
    fitted = fit_to_slot(speech.pcm, speech.rate, start=start, end=end, next_start=next_start)
    pcm = resample(fitted.pcm, speech.rate, rate) if speech.rate != rate else fitted.pcm
    cut = fitted.lead_cut
    words: list[Word] = []
    for word, word_start, word_end in speech.words:
        at = fitted.start + max(0.0, word_start - cut) / fitted.speed
        if at >= fitted.end:
            break
        until = fitted.start + max(0.0, word_end - cut) / fitted.speed
        words.append((word, at, min(fitted.end, until)))
    return pcm, fitted.start, fitted.end, words


def _normalized(tracks: list[Track], rate: int, duration: float) -> bytes:
    """Blocking: the mix at -16 LUFS integrated (true peak limited)."""
    mixed = mix_all(tracks, rate, duration=duration)
    gain = normalization_gain_db(integrated_loudness(mixed, rate), DEFAULT_TARGET_LUFS)
    normalizer = LoudnessNormalizer(rate, gain)
    return normalizer.process(mixed) + normalizer.flush()


def _encode(pcm: bytes, rate: int, format_name: str, out: Path) -> None:
    encoder = make_encoder(parse_format(format_name), rate)
    with out.open("wb") as file:
        file.write(encoder.encode(pcm))
        file.write(encoder.finish())


async def render(
    ctx: JobContext,
    source: Path,
    plan: DubPlan,
    language: str,
    options: DubOptions,
    *,
    workdir: Path,
    cache: SpeechCache,
    background: Path | None = None,
    foreground: Path | None = None,
    segment_ids: set[str] | None = None,
    progress_span: tuple[float, float] = (0.0, 100.0),
) -> RenderedLanguage:
    """``plan`` spoken in ``language`` over the source (see the module doc); the output file
    is written into ``workdir`` (``dubbed_<language>.<ext>``), replacing any earlier one.

    ``foreground`` (the caller's isolated speech track) is accepted for the API's sake: the
    plan already says what is spoken, so it changes nothing here. ``segment_ids`` is
    informative: the cache makes unchanged segments free whatever it says.

    Raises:
        UnknownVoice: a voice in the plan is not installed (any more).
        UnsupportedLanguage: no voice speaks ``language``.
        ValidationFailed: ``language`` is not the source's and the plan has no text in it.
        InvalidAudio: the source or the background cannot be decoded.
    """
    del foreground, segment_ids  # see the docstring
    language = check_language(language)
    if language != plan.source_language and not any(
        language in segment.translations for segment in plan.segments
    ):
        raise ValidationFailed(
            f"the dub has no {language} text: add {language} to its target languages first",
            details={"language": language},
        )
    lo, hi = progress_span
    has_video = plan.has_video
    rate = VIDEO_MIX_RATE if has_video else parse_format(options.output_format).sample_rate
    await ctx.progress(lo)
    clips: list[Clip] = []
    cues: list[Cue] = []
    synthesized = reused = 0
    ordered = sorted(plan.segments, key=lambda s: s.start)
    for index, segment in enumerate(ordered):
        text = _text_for(plan, segment, language)
        if text:
            voice_id = _voice_for(ctx, plan, segment, language, options)
            speech, fresh = await _speech(ctx, cache, voice_id, language, text)
            synthesized += fresh
            reused += not fresh
            following = ordered[index + 1].start if index + 1 < len(ordered) else None
            fit = partial(_fit, speech, rate, segment.start, segment.end, following)
            pcm, start, end, words = await ctx.media_executor.run(fit)
            if pcm:
                clips.append(Clip(pcm, start))
                # Cues a viewer can read, at the words' spoken times where the engine gave
                # them; one cue for the segment where it did not.
                cues.extend(cues_from_words(words) if words else [Cue(start, end, text)])
        await ctx.progress(lo + (hi - lo) * _SYNTH_SHARE * (index + 1) / max(1, len(ordered)))
    tracks = [Track(clips, kind="voice")]
    original: bytes | None = None
    if background is not None:
        bed = await ctx.media_executor.run(partial(_decode_all, background, rate))
        tracks.append(Track([Clip(bed, 0.0)], kind="background"))
    if has_video or (background is None and not options.drop_background_audio):
        original = await ctx.media_executor.run(partial(_decode_all, source, rate))
        if background is None and not options.drop_background_audio:
            tracks.append(Track([Clip(original, 0.0)], kind="background", duck_db=DUCK_DB))
    duration = plan.duration
    dubbed = await ctx.media_executor.run(partial(_normalized, tracks, rate, duration))
    await ctx.progress(lo + (hi - lo) * 0.9)
    await ctx.media_executor.run(partial(workdir.mkdir, parents=True, exist_ok=True))
    if has_video:
        assert original is not None  # decoded above for every video
        out = workdir / f"dubbed_{language}.mp4"
        audio = [
            MuxAudio(dubbed, rate, language=language, title=f"dub ({language})"),
            MuxAudio(original, rate, language=plan.source_language, title="original"),
        ]
        await ctx.media_executor.run(partial(mux_under_video, source, audio, out))
        media_format, content_type = "mp4", "video/mp4"
    else:
        fmt = parse_format(options.output_format)
        out = workdir / f"dubbed_{language}.{fmt.extension}"
        await ctx.media_executor.run(partial(_encode, dubbed, rate, fmt.name, out))
        media_format, content_type = fmt.name, fmt.content_type
    await ctx.progress(hi)
    return RenderedLanguage(
        language=language,
        media=out,
        media_format=media_format,
        content_type=content_type,
        duration=round(len(dubbed) / 2 / rate, 3),
        srt=to_srt(cues),
        vtt=to_vtt(cues),
        synthesized=synthesized,
        reused=reused,
    )
