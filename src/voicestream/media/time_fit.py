"""Fitting synthesized speech into a time slot: a dub's line has to start where the source line
started and should end by where it ended, without running into the next line.

The order of remedies is what keeps a dub natural: speed up a little (pitch kept), then spill
into the pause after the slot, and only when even that is not enough cut the tail with a fade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from voicestream.media.resample import check_rate
from voicestream.media.tempo import Tempo

__all__ = ["Fitted", "fit_to_slot", "trim_silence"]

_FRAME_SECONDS = 0.01
# Spilled speech stops this far before the next line so the two never run together.
_NEXT_LINE_GAP = 0.05
_CUT_FADE_SECONDS = 0.03
# atempo's output length is input / speed within a few ms; that overshoot gets a short fade.
_TEMPO_SLACK_FADE_SECONDS = 0.005


def _check_pcm(pcm: bytes, rate: int) -> None:
    check_rate(rate, "rate")
    if len(pcm) % 2:
        raise ValueError("PCM s16le needs an even number of bytes")


def trim_silence(pcm: bytes, rate: int, *, threshold_dbfs: float = -45.0) -> tuple[bytes, float]:
    """``pcm`` without its leading and trailing silence (10 ms frames whose RMS is under
    ``threshold_dbfs``), and the seconds cut from the front. All silence gives ``(b"", 0.0)``.
    """
    _check_pcm(pcm, rate)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    frame = max(1, round(_FRAME_SECONDS * rate))
    count = math.ceil(samples.size / frame)
    if not count:
        return b"", 0.0
    padded = np.zeros(count * frame)
    padded[: samples.size] = samples
    power = np.mean(np.square(padded.reshape(count, frame)), axis=1)
    loud = np.nonzero(power > 10.0 ** (threshold_dbfs / 10.0))[0]
    if not loud.size:
        return b"", 0.0
    first = int(loud[0]) * frame
    last = min(samples.size, (int(loud[-1]) + 1) * frame)
    return pcm[first * 2 : last * 2], first / rate


@dataclass(frozen=True, slots=True)
class Fitted:
    """Speech to place at ``start``; ``speed`` is the tempo applied (1.0 = unchanged)."""

    pcm: bytes
    start: float
    end: float
    speed: float
    truncated: bool
    # Seconds of leading silence cut from the input: a word at t in the input is heard at
    # start + (t - lead_cut) / speed.
    lead_cut: float = 0.0


def _fade_out(pcm: bytes, samples: int) -> bytes:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    samples = min(samples, x.size)
    if samples:
        x[x.size - samples :] *= np.linspace(1.0, 0.0, samples + 1)[1:]
    return np.rint(x).astype("<i2").tobytes()


def _cut(pcm: bytes, rate: int, seconds: float, fade_seconds: float) -> bytes:
    """``pcm`` no longer than ``seconds``, its new tail faded out when it was cut."""
    keep = math.floor(seconds * rate)
    if len(pcm) // 2 <= keep:
        return pcm
    return _fade_out(pcm[: keep * 2], round(fade_seconds * rate))


def _tempo(pcm: bytes, rate: int, speed: float) -> bytes:
    tempo = Tempo(rate, speed)
    return tempo.process(pcm) + tempo.flush()


def fit_to_slot(
    pcm: bytes,
    rate: int,
    *,
    start: float,
    end: float,
    next_start: float | None,
    min_speed: float = 0.8,
    max_speed: float = 1.25,
    stretch: bool = False,
) -> Fitted:
    """Fits ``pcm`` (mono s16le) into the slot ``[start, end)`` (blocking).

    Silence is trimmed first. Speech shorter than the slot stays as it is (or, with
    ``stretch``, is slowed down towards the slot's length, by at most ``min_speed``). Longer
    speech is sped up by at most ``max_speed``; what still does not fit spills into the pause
    up to ``next_start`` minus 50 ms; past that the tail is cut with a 30 ms fade. The result
    never ends after ``next_start`` (None: nothing follows, spilling is unbounded).

    Raises:
        ValueError: a bad rate or PCM, an empty or negative slot, or speeds outside
            ``0 < min_speed <= 1 <= max_speed``.
    """
    _check_pcm(pcm, rate)
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise ValueError(f"the slot must satisfy 0 <= start < end, got {start!r}..{end!r}")
    if not 0 < min_speed <= 1.0 <= max_speed:
        raise ValueError("speeds must satisfy 0 < min_speed <= 1 <= max_speed")
    if next_start is not None and next_start < start:
        raise ValueError("next_start must not be before start")
    speech, lead_cut = trim_silence(pcm, rate)
    slot = end - start
    length = len(speech) / 2 / rate
    speed = 1.0
    if length > slot:
        speed = min(max_speed, length / slot)
    elif stretch and length > 0:
        speed = max(min_speed, length / slot)
    if speed != 1.0:
        changed = _tempo(speech, rate, speed)
        # atempo needs a window of input before it outputs anything: a few tens of ms of
        # speech come back empty or clipped, so such a blip keeps its tempo and gets cut.
        if len(changed) >= 0.9 * len(speech) / speed:
            speech = changed
        else:
            speed = 1.0

    if next_start is None:
        limit = math.inf
    else:
        limit = min(next_start, max(end, next_start - _NEXT_LINE_GAP))
    truncated = False
    if 1.0 < speed < max_speed:
        # Sped up to fit the slot exactly: atempo's output may run a few ms over it.
        speech = _cut(speech, rate, min(limit, end) - start, _TEMPO_SLACK_FADE_SECONDS)
    if math.isfinite(limit) and len(speech) / 2 / rate > limit - start:
        speech = _cut(speech, rate, limit - start, _CUT_FADE_SECONDS)
        truncated = True
    return Fitted(
        pcm=speech,
        start=start,
        end=start + len(speech) / 2 / rate,
        speed=speed,
        truncated=truncated,
        lead_cut=lead_cut,
    )
