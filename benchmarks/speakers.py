"""The benchmarks' simulated callers: text spoken by a catalog voice, in this process, as 16 kHz.

STT is judged on more than one speaker: pocketsphinx is tuned, in effect, to flite, so a
benchmark that only plays flite flatters it. ``NATURAL`` (Piper joe, a recorded human voice)
is the speaker the acceptance figures are about; ``ROBOTIC`` (flite slt) is the old baseline.
"""

from __future__ import annotations

import functools

import numpy as np

from voicestream.config import load_settings
from voicestream.engines.base import TTSEngine, Voice
from voicestream.engines.catalog import EngineRegistry, build_default_registry
from voicestream.media.resample import resample

__all__ = ["NATURAL", "ROBOTIC", "SAMPLE_RATE", "engine_and_voice", "speak"]

NATURAL = "en_US-joe-medium"
ROBOTIC = "slt"
SAMPLE_RATE = 16000
_LOUD = 300  # about -40 dBFS: where speech starts and ends


@functools.cache
def _registry() -> EngineRegistry:
    # The server's catalog and engine options from the same environment the server inherits
    # (providers, models dir); pocketsphinx, because this process only speaks.
    return build_default_registry(load_settings(stt_engine="pocketsphinx"))


def engine_and_voice(voice_id: str) -> tuple[TTSEngine, Voice]:
    """The engine the server would use for ``voice_id``, loaded in this process.

    Raises:
        UnknownVoice: the default catalog does not offer it.
    """
    return _registry().voice(voice_id)


def speak(voice_id: str, text: str, *, trim: bool = False) -> bytes:
    """``text`` in ``voice_id`` as mono s16le at 16 kHz, the rate the servers' STT runs at.

    With ``trim``, the clip starts and ends exactly where speech does: latency clocks that
    start at "the last frame containing speech" then start at the right place.
    """
    engine, voice = engine_and_voice(voice_id)
    result = engine.synthesize(text, voice)
    pcm = resample(result.pcm, result.sample_rate, SAMPLE_RATE)
    if not trim:
        return pcm
    samples = np.frombuffer(pcm, np.int16)
    loud = np.flatnonzero(np.abs(samples) > _LOUD)
    if not loud.size:
        return pcm
    return samples[int(loud[0]) : int(loud[-1]) + 1].tobytes()
