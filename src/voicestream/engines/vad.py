"""Per-stream speech segmentation on top of a frame-level ``VADModel``.

Turns window probabilities into "start"/"end" events with hysteresis (enter above ``threshold``,
leave below ``threshold - 0.15``), a minimum speech length so a click does not open a segment,
and a minimum silence so a pause between words does not close one. Pure and blocking: feed it
audio on an executor thread; chunking of the input never changes the result.

With ``pause_ms`` it also reports the moments in between: "pause" once a silence inside speech
has lasted that long (the utterance *may* be over, so a slow decoder can start on it early), and
"resume" when speech comes back before the silence closed the segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from voicestream.engines.base import VADModel

__all__ = ["VADEvent", "VoiceActivityDetector"]

_HYSTERESIS = 0.15


@dataclass(frozen=True, slots=True)
class VADEvent:
    kind: Literal["start", "end", "pause", "resume"]
    # Stream sample index; a start includes the pad before the speech. A pause carries the
    # sample the segment would end at if the silence under way closed it. An index, not
    # seconds: index → seconds → index can land one sample short (32224 → 32223), and a pause
    # must name exactly the sample its end will.
    sample: int
    rate: int

    @property
    def time(self) -> float:
        """Seconds of stream audio."""
        return self.sample / self.rate


class VoiceActivityDetector:
    """Speech start/end events for one stream of mono s16le audio at ``model.sample_rate``."""

    def __init__(
        self,
        model: VADModel,
        *,
        threshold: float = 0.5,
        min_silence_ms: int = 400,
        min_speech_ms: int = 100,
        speech_pad_ms: int = 30,
        pause_ms: int | None = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be between 0 and 1")
        if pause_ms is not None and not 0 <= pause_ms < min_silence_ms:
            raise ValueError("pause_ms must be at least 0 and shorter than min_silence_ms")
        self._model = model
        self._state = model.new_state()
        self._rate = model.sample_rate
        self._window = model.window_samples
        self._enter = threshold
        # Below 0.3 the plain "threshold - 0.15" would reach zero and speech could never end.
        self._exit = max(threshold - _HYSTERESIS, threshold / 2)
        self._min_silence = min_silence_ms * self._rate // 1000
        self._min_speech = min_speech_ms * self._rate // 1000
        self._pad = speech_pad_ms * self._rate // 1000
        # Never before the pad has passed: a pause then always names the very sample index the
        # "end" of the same silence will, so what a decoder started on at the pause is all there
        # is (events carry that index itself, so no rounding can move it).
        self._pause = None
        if pause_ms is not None:
            self._pause = max(pause_ms, speech_pad_ms) * self._rate // 1000
        self._paused = False  # a "pause" went out for the silence under way
        self._pending = bytearray()  # input not yet making a whole window
        self._offset = 0  # stream sample index of the first pending sample
        self._in_speech = False
        self._candidate: int | None = None  # where possible speech began, while not in speech
        self._silence: int | None = None  # where possible silence began, while in speech

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def judged_until(self) -> int:
        """Stream sample index up to which the audio is known to belong to the segment: where
        the segment would end while a silence may be closing it, else all audio received."""
        received = self._offset + len(self._pending) // 2
        if self._in_speech and self._silence is not None:
            return min(self._silence + self._pad, received)
        return received

    def process(self, pcm: bytes) -> list[VADEvent]:
        """Blocking: consume audio, return the events it completes (often none)."""
        self._pending += pcm
        window_bytes = self._window * 2
        usable = len(self._pending) // window_bytes * window_bytes
        if not usable:
            return []
        samples = np.frombuffer(bytes(self._pending[:usable]), dtype="<i2")
        del self._pending[:usable]
        audio = samples.astype(np.float32) / 32768.0
        events: list[VADEvent] = []
        for start in range(0, len(audio), self._window):
            window = audio[start : start + self._window]
            probability = self._model.speech_probability(self._state, window)
            event = self._step(self._offset, self._offset + self._window, probability)
            if event is not None:
                events.append(event)
            self._offset += self._window
        return events

    def flush(self) -> list[VADEvent]:
        """End of input: close an open segment at the end of the audio received."""
        stream_end = self._offset + len(self._pending) // 2
        self._offset = stream_end
        self._pending.clear()
        self._candidate = None
        if not self._in_speech:
            return []
        end = stream_end if self._silence is None else min(self._silence + self._pad, stream_end)
        self._in_speech = False
        self._silence = None
        self._paused = False
        return [VADEvent("end", end, self._rate)]

    def _step(self, start: int, stop: int, probability: float) -> VADEvent | None:
        if not self._in_speech:
            if probability >= self._enter:
                if self._candidate is None:
                    self._candidate = start
                if stop - self._candidate >= self._min_speech:
                    begin = max(0, self._candidate - self._pad)
                    self._in_speech, self._candidate, self._silence = True, None, None
                    return VADEvent("start", begin, self._rate)
            elif probability < self._exit:
                self._candidate = None
            return None
        if probability >= self._enter:
            resumed = self._paused
            self._silence, self._paused = None, False
            if resumed:
                return VADEvent("resume", start, self._rate)
        elif probability < self._exit:
            if self._silence is None:
                self._silence = start
            if stop - self._silence >= self._min_silence:
                end = min(self._silence + self._pad, stop)
                self._in_speech, self._silence, self._paused = False, None, False
                return VADEvent("end", end, self._rate)
            if self._pause is not None and not self._paused and stop - self._silence >= self._pause:
                self._paused = True
                return VADEvent("pause", self._silence + self._pad, self._rate)
        return None
