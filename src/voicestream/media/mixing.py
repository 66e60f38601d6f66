"""A multitrack timeline mixed down to mono s16le, one block at a time.

Clips hold their own PCM and only the part of each clip that falls inside the block being
mixed is turned into floats, so an hour-long timeline never becomes one giant float array.
Music, effects and background tracks can duck under the voice tracks: the voices' level per
10 ms frame says where speech is, and the attenuation follows it with attack and release ramps.
The sum goes through a soft limiter, so loud overlaps bend towards full scale instead of
clipping or wrapping around.

Every stage works on the absolute timeline (sample and frame indexes), not on block-relative
positions, so the output does not depend on ``block_seconds``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from voicestream.media.resample import check_rate

__all__ = ["Clip", "Track", "mix", "mix_all"]

TrackKind = Literal["voice", "music", "effects", "background"]

_FULL_SCALE = 32768.0
# Speech detection for ducking: a 10 ms frame of the voice tracks louder than this is speech.
_SPEECH_DBFS = -45.0
_FRAME_SECONDS = 0.01
_ATTACK_SECONDS = 0.05
_RELEASE_SECONDS = 0.3
# Short gaps between words stay ducked: without a hold the music would pump up between words.
_HOLD_SECONDS = 0.15
# The limiter leaves everything below the knee untouched and bends what is above it
# asymptotically towards a ceiling a hair under full scale, so that even float rounding
# never lands a sample on the clipping rail.
_KNEE = 10.0 ** (-1.0 / 20.0)
_CEILING = 0.999

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Clip:
    """``pcm`` (mono s16le at the mix rate) placed at ``start`` seconds on the timeline."""

    pcm: bytes
    start: float
    gain_db: float = 0.0
    fade_in: float = 0.0
    fade_out: float = 0.0


@dataclass(frozen=True, slots=True)
class Track:
    """Clips of one kind; ``duck_db`` (<= 0) attenuates a non-voice track while voices speak."""

    clips: Sequence[Clip]
    kind: TrackKind = "voice"
    gain_db: float = 0.0
    duck_db: float = 0.0


def _gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


class _PlacedClip:
    """A clip in samples, with the gain of its track folded in."""

    __slots__ = ("end", "fade_in", "fade_out", "gain", "length", "pcm", "start")

    def __init__(self, clip: Clip, track_gain_db: float, rate: int) -> None:
        if len(clip.pcm) % 2:
            raise ValueError("clip PCM s16le needs an even number of bytes")
        if not math.isfinite(clip.start) or clip.start < 0:
            raise ValueError(f"clip start must be a finite number >= 0, got {clip.start!r}")
        if clip.fade_in < 0 or clip.fade_out < 0:
            raise ValueError("clip fades must be >= 0 seconds")
        self.pcm = clip.pcm
        self.length = len(clip.pcm) // 2
        self.start = round(clip.start * rate)
        self.end = self.start + self.length
        self.gain = _gain(clip.gain_db + track_gain_db)
        self.fade_in = min(self.length, round(clip.fade_in * rate))
        self.fade_out = min(self.length, round(clip.fade_out * rate))

    def render(self, into: Floats, first: int) -> None:
        """Adds this clip's samples that fall in ``[first, first + len(into))`` to ``into``."""
        lo = max(first, self.start)
        hi = min(first + into.size, self.end)
        if lo >= hi:
            return
        offset = lo - self.start  # sample index inside the clip
        count = hi - lo
        samples = np.frombuffer(self.pcm, dtype="<i2", count=count, offset=offset * 2)
        part = samples.astype(np.float32) * np.float32(self.gain / _FULL_SCALE)
        in_fade_in = self.fade_in and offset < self.fade_in
        in_fade_out = self.fade_out and offset + count > self.length - self.fade_out
        if in_fade_in or in_fade_out:
            # float64 positions: float32 cannot count the samples of a clip past ~6 minutes.
            index = np.arange(offset, offset + count, dtype=np.float64)
            ramp = np.ones(count, dtype=np.float64)
            if in_fade_in:
                ramp = np.minimum(ramp, index / self.fade_in)
            if in_fade_out:
                ramp = np.minimum(ramp, (self.length - index) / self.fade_out)
            part *= ramp.astype(np.float32)
        into[lo - first : hi - first] += part


class _PlacedTrack:
    __slots__ = ("clips", "duck", "ends", "kind", "starts")

    def __init__(self, track: Track, rate: int) -> None:
        if track.duck_db > 0 or not math.isfinite(track.duck_db):
            raise ValueError(f"duck_db must be <= 0, got {track.duck_db!r}")
        self.kind = track.kind
        self.duck = track.duck_db if track.kind != "voice" else 0.0
        self.clips = [_PlacedClip(clip, track.gain_db, rate) for clip in track.clips]
        self.starts = np.array([c.start for c in self.clips], dtype=np.int64)
        self.ends = np.array([c.end for c in self.clips], dtype=np.int64)

    def render(self, into: Floats, first: int) -> None:
        hits = np.nonzero((self.starts < first + into.size) & (self.ends > first))[0]
        for index in hits:
            self.clips[int(index)].render(into, first)

    @property
    def end(self) -> int:
        return int(self.ends.max()) if self.clips else 0


class _Ducker:
    """The ducking amount (0 = none, 1 = fully ducked) on the grid of 10 ms frames.

    ``amount[k]`` is the value at the start of frame ``k`` and depends on the speech flags of
    frames before ``k``; samples in between are interpolated linearly. Frames are visited in
    order once; values still needed by the next block are kept.
    """

    def __init__(self, voices: list[_PlacedTrack], rate: int) -> None:
        self._voices = voices
        self.frame = max(1, round(_FRAME_SECONDS * rate))
        self._attack_step = 1.0 / max(1.0, _ATTACK_SECONDS / _FRAME_SECONDS)
        self._release_step = 1.0 / max(1.0, _RELEASE_SECONDS / _FRAME_SECONDS)
        self._hold_frames = round(_HOLD_SECONDS / _FRAME_SECONDS)
        self._threshold = _gain(_SPEECH_DBFS) ** 2  # on the mean square
        self._amount: dict[int, float] = {0: 0.0}
        self._next = 0  # the first frame whose speech flag has not been seen
        self._hold = 0
        self._level = 0.0

    def _advance(self, upto: int) -> None:
        """Computes ``amount`` up to frame ``upto`` inclusive."""
        if upto <= self._next:
            return
        first, last = self._next, upto  # flags of frames first..last-1 are needed
        voice = np.zeros((last - first) * self.frame, dtype=np.float32)
        for track in self._voices:
            track.render(voice, first * self.frame)
        power = np.mean(np.square(voice.reshape(-1, self.frame), dtype=np.float64), axis=1)
        level = self._level
        for offset, speech in enumerate(power > self._threshold):
            if speech:
                self._hold = self._hold_frames
                level = min(1.0, level + self._attack_step)
            elif self._hold > 0:
                self._hold -= 1
                level = min(1.0, level + self._attack_step) if level < 1.0 else level
            else:
                level = max(0.0, level - self._release_step)
            self._amount[first + offset + 1] = level
        self._level = level
        self._next = last

    def amount(self, first: int, count: int) -> Floats:
        """The ducking amount of samples ``[first, first + count)``."""
        k0 = first // self.frame
        k1 = (first + count - 1) // self.frame + 1
        self._advance(k1)
        grid = np.array([self._amount[k] for k in range(k0, k1 + 1)], dtype=np.float32)
        # The next block may start inside frame k1 - 1.
        for stale in [k for k in self._amount if k < k1 - 1]:
            del self._amount[stale]
        positions = np.arange(first, first + count, dtype=np.float64) / self.frame - k0
        return np.interp(positions, np.arange(grid.size), grid).astype(np.float32)


def _soft_limit(x: Floats) -> Floats:
    """Identity below the knee; above it a tanh curve that approaches full scale."""
    magnitude = np.abs(x)
    over = magnitude > _KNEE
    if np.any(over):
        room = _CEILING - _KNEE
        bent = _KNEE + room * np.tanh((magnitude[over] - _KNEE) / room)
        x[over] = np.sign(x[over]) * bent.astype(np.float32)
    return x


def _to_pcm(x: Floats) -> bytes:
    scaled = np.rint(x * np.float32(_FULL_SCALE))
    return bytes(np.clip(scaled, -32768, 32767).astype("<i2").tobytes())


def mix(
    tracks: Sequence[Track],
    rate: int,
    *,
    duration: float | None = None,
    block_seconds: float = 10.0,
) -> Iterator[bytes]:
    """Blocking generator: the sum of all tracks as s16le blocks (the last may be short),
    through a soft limiter (never clips, never wraps around).

    ``duration`` None mixes up to the end of the last clip; a longer duration pads with silence,
    a shorter one cuts the timeline there.

    Raises:
        ValueError: a bad rate, duration, block size, clip or ``duck_db`` (programming errors).
    """
    check_rate(rate, "rate")
    if not block_seconds > 0:
        raise ValueError(f"block_seconds must be > 0, got {block_seconds!r}")
    if duration is not None and not (math.isfinite(duration) and duration >= 0):
        raise ValueError(f"duration must be a finite number >= 0, got {duration!r}")
    placed = [_PlacedTrack(track, rate) for track in tracks]
    total = max((t.end for t in placed), default=0) if duration is None else round(duration * rate)
    block = max(1, round(block_seconds * rate))
    voices = [t for t in placed if t.kind == "voice" and t.clips]
    ducked = [t for t in placed if t.duck < 0]
    ducker = _Ducker(voices, rate) if voices and ducked else None
    return _blocks(placed, ducker, total, block)


def _blocks(
    placed: list[_PlacedTrack], ducker: _Ducker | None, total: int, block: int
) -> Iterator[bytes]:
    for first in range(0, total, block):
        count = min(block, total - first)
        out = np.zeros(count, dtype=np.float32)
        amount = ducker.amount(first, count) if ducker is not None else None
        for track in placed:
            if amount is None or track.duck >= 0:
                track.render(out, first)
                continue
            part = np.zeros(count, dtype=np.float32)
            track.render(part, first)
            # Interpolating in dB keeps the ramp even to the ear.
            part *= np.power(np.float32(10.0), amount * np.float32(track.duck / 20.0))
            out += part
        yield _to_pcm(_soft_limit(out))


def mix_all(tracks: Sequence[Track], rate: int, *, duration: float | None = None) -> bytes:
    """The whole mix at once (short timelines, tests): ``b"".join(mix(...))``."""
    return b"".join(mix(tracks, rate, duration=duration))
