"""Pieces shared by the STT transports: opening a stream, collecting finals."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from ..engines.base import STTEngine, Word
from ..engines.stt_stream import STTEvent, STTStream
from ..errors import UnsupportedFormat
from ..media.formats import AudioFormat, parse_format
from ..rest.resources import REGISTRY, SETTINGS, STT_EXECUTOR

__all__ = ["TranscriptBuilder", "open_recording_stream", "open_stt_stream", "parse_raw_format"]

# A recording's channel is estimated from its first this-many seconds (bounded work per file).
_CALIBRATION_SECONDS = 30.0


def open_stt_stream(
    rt: web.Application,
    *,
    source_rate: int | None = None,
    engine: STTEngine | None = None,
    word_times: bool = True,
    language: str | None = None,
) -> STTStream:
    """``source_rate``: the client's sample rate where known (8 kHz marks a phone line);
    ``engine``: one picked by model name (``registry.stt_for``), else the default;
    ``word_times``: False where the protocol carries no word timings (faster finals);
    ``language``: what the client says is spoken (None: the engine's choice).

    Raises:
        UnsupportedLanguage: the engine does not hear ``language``.
        Busy: the engine serves as many streams as it admits.
    """
    engine = engine or rt[REGISTRY].stt
    stream = STTStream(
        engine,
        rt[REGISTRY].vad,
        rt[STT_EXECUTOR],
        vad_threshold=rt[SETTINGS].vad_threshold,
        min_silence_ms=rt[SETTINGS].vad_min_silence_ms,
        min_speech_ms=rt[SETTINGS].vad_min_speech_ms,
        word_times=word_times,
        language=language,
    )
    stream.narrowband = source_rate is not None and source_rate <= 8000
    return stream


async def open_recording_stream(
    rt: web.Application,
    recording: bytes,
    *,
    source_rate: int | None = None,
    engine: STTEngine | None = None,
    language: str | None = None,
) -> STTStream:
    """A stream for one whole recording (a file, a committed buffer), calibrated on it: the
    same recording always gives the same transcript, whatever the server heard before."""
    engine = engine or rt[REGISTRY].stt
    stream = open_stt_stream(rt, source_rate=source_rate, engine=engine, language=language)
    try:
        await stream.calibrate(recording[: int(_CALIBRATION_SECONDS * engine.sample_rate) * 2])
    except BaseException:
        await stream.aclose()
        raise
    return stream


def parse_raw_format(name: str) -> AudioFormat:
    """A format for headerless input audio: pcm_<rate>, ulaw_8000 or alaw_8000."""
    fmt = parse_format(name)
    if not fmt.is_raw:
        raise UnsupportedFormat(
            f"format {name!r} is not raw audio; use pcm_<rate>, ulaw_8000 or alaw_8000 "
            "(containers such as WAV or MP3 are detected from the data itself)"
        )
    return fmt


@dataclass(slots=True)
class TranscriptBuilder:
    """Accumulates final events into one transcript."""

    texts: list[str] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)

    def add(self, events: list[STTEvent]) -> None:
        for ev in events:
            if ev.kind == "final" and ev.text:
                self.texts.append(ev.text)
                self.words.extend(ev.words)

    @property
    def text(self) -> str:
        return " ".join(self.texts)
