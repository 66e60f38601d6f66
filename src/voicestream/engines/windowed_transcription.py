"""A whole recording through Whisper one bounded window at a time, on a shared executor.

One ``transcribe`` call on a long upload holds an executor thread for as long as the whole
decode takes (minutes for an hour on a CPU), and the live streams that share the executor wait
behind it. Submitted one window at a time, each job is as long as one Whisper window, and jobs
that live streams queue meanwhile run before the next window's (the executor serves the
earliest-queued job first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from .base import Transcript, Word
from .executor import InferenceExecutor
from .whisper_stt import WhisperSTT

__all__ = ["WINDOW_SECONDS", "WindowTranscript", "transcribe_windows"]

# Whisper's encoder sees 30 s at a time: a longer window is walked in pieces anyway.
WINDOW_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class WindowTranscript:
    """One window's text; its times (and its words') are seconds into the whole recording."""

    start: float
    end: float
    transcript: Transcript


async def transcribe_windows(
    engine: WhisperSTT,
    pcm16k: bytes,
    windows: Sequence[tuple[int, int]],
    executor: InferenceExecutor,
    *,
    task: Literal["transcribe", "translate"] = "transcribe",
    language: str | None = None,
) -> list[WindowTranscript]:
    """Each ``[start, end)`` sample range of ``pcm16k`` as its own job, one after the other.

    Raises what ``WhisperSTT.transcribe`` raises (``ModelNotInstalled``, ``UnsupportedLanguage``,
    ``EngineError``); a cancelled caller leaves the windows not yet started undone.
    """
    rate = engine.sample_rate
    results: list[WindowTranscript] = []
    for first, last in windows:
        job = partial(
            engine.transcribe,
            pcm16k[first * 2 : last * 2],
            language=language,
            task=task,
            word_timestamps=True,
        )
        result = await executor.run(job)
        offset = first / rate
        words = tuple(Word(w.text, w.start + offset, w.end + offset) for w in result.words)
        results.append(
            WindowTranscript(offset, last / rate, Transcript(result.text.strip(), words))
        )
    return results
