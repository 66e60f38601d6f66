"""Loudness of mono s16le (ITU-R BS.1770-4, EBU R128) measured in chunks, and normalization to a
target with a true-peak limiter.

Long-form audio (an audiobook: hours) never has to be in memory at once: ``LoudnessMeter`` takes
the audio a chunk at a time and keeps only one energy figure per 100 ms, and
``LoudnessNormalizer`` applies the gain and the limiter a chunk at a time, so a caller measures
in one pass (while the audio is produced) and normalizes in a second one.

The K-weighting filters come from ``pyloudnorm`` (its BS.1770 filter design); what it does not
offer is running them chunk by chunk, so the meter carries the filters' state between chunks
and does the gating on 100 ms sub-blocks itself. On whole signals it agrees with
``pyloudnorm.Meter.integrated_loudness`` (tests/media/test_loudness.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyloudnorm
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import lfilter, resample_poly

__all__ = [
    "DEFAULT_TARGET_LUFS",
    "DEFAULT_TRUE_PEAK_DBTP",
    "MAX_GAIN_DB",
    "LoudnessMeter",
    "LoudnessNormalizer",
    "fit_gain_db",
    "integrated_loudness",
    "normalization_gain_db",
]

# EBU R128's figure for programmes (and the usual one for podcasts and audiobooks); -23 is the
# broadcast one. A true peak of -1 dBTP leaves room for lossy encoders' overshoot.
DEFAULT_TARGET_LUFS = -16.0
DEFAULT_TRUE_PEAK_DBTP = -1.0
# Near-silent input would otherwise be raised until its noise floor is as loud as speech.
MAX_GAIN_DB = 30.0
# What ``fit_gain_db`` may add to make up for the limiter: past this the audio is being crushed
# rather than normalized, and stays quieter than the target instead.
MAX_MAKEUP_DB = 6.0

_FULL_SCALE = 32768.0
_SUB_BLOCK_S = 0.1  # BS.1770 gating blocks are 400 ms with 75 % overlap: 4 of these
_BLOCKS_PER_GATE = 4
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0
# Sample peaks miss the peaks between samples that a DAC (or a lossy decoder) reconstructs;
# 4x oversampling is how BS.1770 estimates the true peak.
_OVERSAMPLE = 4


@dataclass(slots=True)
class _FilterStage:
    """One IIR stage of the K-weighting, with its state carried from chunk to chunk."""

    b: npt.NDArray[np.float64]
    a: npt.NDArray[np.float64]
    gain: float
    state: npt.NDArray[np.float64]


def _pcm_to_float64(pcm: bytes) -> npt.NDArray[np.float64]:
    if len(pcm) % 2:
        raise ValueError("PCM s16le needs an even number of bytes")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / _FULL_SCALE


def _energy_to_lufs(mean_square: float) -> float:
    return -0.691 + 10.0 * math.log10(mean_square) if mean_square > 0 else -math.inf


class LoudnessMeter:
    """Integrated loudness of one mono stream, fed in chunks of any size.

    Memory grows by one float per 100 ms of audio (about 300 KB for ten hours).
    """

    __slots__ = ("_count", "_energies", "_filters", "_pending", "_pending_count", "_step", "rate")

    def __init__(self, rate: int) -> None:
        if rate < 2000:
            raise ValueError("the loudness meter needs a sample rate of at least 2 kHz")
        self.rate = rate
        meter = pyloudnorm.Meter(rate)  # K-weighting: a high shelf, then a high pass
        # pyloudnorm keeps its filter stages in ``_filters``; there is no public accessor.
        self._filters: list[_FilterStage] = [
            _FilterStage(
                np.asarray(stage.b, dtype=np.float64),
                np.asarray(stage.a, dtype=np.float64),
                float(stage.passband_gain),
                np.zeros(max(len(stage.a), len(stage.b)) - 1),
            )
            for stage in meter._filters.values()
        ]
        self._step = max(1, round(rate * _SUB_BLOCK_S))
        self._energies: list[float] = []  # sum of squares of each whole 100 ms sub-block
        self._pending = 0.0  # sum of squares of the samples after the last whole sub-block
        self._pending_count = 0
        self._count = 0

    @property
    def seconds(self) -> float:
        """Audio measured so far."""
        return self._count / self.rate

    def feed(self, pcm: bytes) -> None:
        """Measure the next chunk of mono s16le."""
        x = _pcm_to_float64(pcm)
        if not x.size:
            return
        self._count += x.size
        for stage in self._filters:
            x, stage.state = lfilter(stage.b, stage.a, x, zi=stage.state)
            x = x * stage.gain
        squares = x * x
        # Top up the partial sub-block left by the previous chunk, then whole ones.
        need = self._step - self._pending_count
        head = squares[:need]
        self._pending += float(head.sum())
        self._pending_count += head.size
        if self._pending_count < self._step:
            return
        self._energies.append(self._pending)
        rest = squares[need:]
        whole = rest.size // self._step
        if whole:
            self._energies.extend(rest[: whole * self._step].reshape(whole, self._step).sum(axis=1))
        tail = rest[whole * self._step :]
        self._pending = float(tail.sum())
        self._pending_count = tail.size

    def integrated(self) -> float:
        """Integrated loudness in LUFS so far (-inf for silence or no audio).

        Audio shorter than one 400 ms gating block is measured as one block of what there is.
        """
        energies = np.asarray(self._energies, dtype=np.float64)
        if energies.size < _BLOCKS_PER_GATE:
            samples = energies.size * self._step + self._pending_count
            total = float(energies.sum()) + self._pending
            return _energy_to_lufs(total / samples) if samples else -math.inf
        # Mean square of each 400 ms block, stepping 100 ms: four sub-blocks at a time.
        sums = np.convolve(energies, np.ones(_BLOCKS_PER_GATE), mode="valid")
        blocks = sums / (_BLOCKS_PER_GATE * self._step)
        with np.errstate(divide="ignore"):
            loudness = -0.691 + 10.0 * np.log10(blocks)
        gated = blocks[loudness > _ABSOLUTE_GATE_LUFS]
        if not gated.size:
            return -math.inf
        relative = _energy_to_lufs(float(gated.mean())) + _RELATIVE_GATE_LU
        kept = blocks[(loudness > _ABSOLUTE_GATE_LUFS) & (loudness > relative)]
        return _energy_to_lufs(float(kept.mean())) if kept.size else -math.inf


def integrated_loudness(pcm: bytes, rate: int) -> float:
    """Integrated loudness in LUFS of a whole mono s16le signal."""
    meter = LoudnessMeter(rate)
    meter.feed(pcm)
    return meter.integrated()


def normalization_gain_db(
    measured_lufs: float, target_lufs: float = DEFAULT_TARGET_LUFS, max_gain_db: float = MAX_GAIN_DB
) -> float:
    """The gain that brings ``measured_lufs`` to ``target_lufs``: 0 for silence, at most
    ``max_gain_db`` up."""
    if not math.isfinite(measured_lufs):
        return 0.0
    return min(target_lufs - measured_lufs, max_gain_db)


class LoudnessNormalizer:
    """A fixed gain, then a look-ahead true-peak limiter, over mono s16le in chunks.

    The limiter never lets the 4x-oversampled peak pass ``ceiling_dbtp``: each sample's gain is
    the smallest any peak within ``lookahead_ms`` ahead or ``hold_ms`` behind asks for, and that
    gain curve is smoothed over half the look-ahead, so the gain ramps down before a peak
    instead of stepping (a step is an audible click). Speech at -16 LUFS peaks a few dB over
    -1 dBTP now and then; the limiter takes those few dB off the peaks and leaves the rest.

    The output lags the input by the look-ahead plus the hold; ``flush`` returns the rest, so
    the whole output has exactly as many samples as the input.
    """

    __slots__ = ("_ceiling", "_context", "_gain", "_hold", "_lookahead", "_x")

    def __init__(
        self,
        rate: int,
        gain_db: float,
        *,
        ceiling_dbtp: float = DEFAULT_TRUE_PEAK_DBTP,
        lookahead_ms: float = 5.0,
        hold_ms: float = 40.0,
    ) -> None:
        self._gain = 10.0 ** (gain_db / 20.0)
        self._ceiling = 10.0 ** (ceiling_dbtp / 20.0)
        self._lookahead = max(2, round(rate * lookahead_ms / 1000.0))
        self._hold = max(self._lookahead, round(rate * hold_ms / 1000.0))
        # Samples each side of a span that its gains depend on: the windows, and the
        # oversampling filter's reach (resample_poly's default filter spans ±10 input samples).
        self._context = self._hold + 2 * self._lookahead + 16
        # Input not yet output, after ``_context`` samples already output (zeros at the start).
        self._x = np.zeros(self._context, dtype=np.float64)

    def process(self, pcm: bytes) -> bytes:
        """The next chunk in; the samples that are final now out (possibly ``b""``)."""
        x = _pcm_to_float64(pcm)
        if x.size:
            self._x = np.concatenate((self._x, x * self._gain))
        return self._drain(final=False)

    def flush(self) -> bytes:
        """Everything still held back, at the end of the stream."""
        self._x = np.concatenate((self._x, np.zeros(self._context)))
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> bytes:
        c = self._context
        ready = self._x.size - 2 * c  # samples with their whole context on both sides
        if ready <= 0:
            return b""
        gains = self._gains(self._x)[c : c + ready]
        out = self._x[c : c + ready] * gains
        # Keep the context the next span's gains depend on; at the end nothing is left.
        self._x = np.zeros(c) if final else self._x[ready:]
        scaled = np.rint(out * _FULL_SCALE)
        return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()

    def _gains(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        oversampled = np.abs(resample_poly(x, _OVERSAMPLE, 1))
        peaks = np.maximum(
            np.abs(x), oversampled[: x.size * _OVERSAMPLE].reshape(-1, _OVERSAMPLE).max(axis=1)
        )
        wanted = np.minimum(1.0, self._ceiling / np.maximum(peaks, 1e-12))
        if wanted.min() >= 1.0:
            return np.ones_like(x)
        # Window [n - hold, n + lookahead]: origin shifts scipy's centred window backwards.
        size = self._hold + self._lookahead + 1
        held = minimum_filter1d(
            wanted, size=size, origin=size // 2 - self._lookahead, mode="nearest"
        )
        # Each average stays within the look-ahead of the peak that asked, so it never exceeds
        # the gain that peak needs.
        smoothed: npt.NDArray[np.float64] = uniform_filter1d(
            held, size=self._lookahead // 2 * 2 + 1, mode="nearest"
        )
        return smoothed


def _limiter_loss_db(blocks: Iterable[bytes], rate: int, gain_db: float, ceiling: float) -> float:
    """How many LU quieter the limiter makes ``blocks`` at ``gain_db`` (each block limited on
    its own: the limiter's reach is tens of milliseconds, so a sample of blocks stands for the
    whole)."""
    before = LoudnessMeter(rate)
    after = LoudnessMeter(rate)
    for block in blocks:
        limiter = LoudnessNormalizer(rate, gain_db, ceiling_dbtp=ceiling)
        before.feed(block)
        after.feed(limiter.process(block) + limiter.flush())
    loss = before.integrated() + gain_db - after.integrated()
    return max(0.0, loss) if math.isfinite(loss) else 0.0


def fit_gain_db(
    measured_lufs: float,
    target_lufs: float,
    blocks: Callable[[], Iterable[bytes]],
    rate: int,
    *,
    ceiling_dbtp: float = DEFAULT_TRUE_PEAK_DBTP,
    rounds: int = 4,
) -> float:
    """The gain that brings audio measured at ``measured_lufs`` to ``target_lufs`` *after* the
    true-peak limiter, within 0.2 LU where ``MAX_MAKEUP_DB`` allows.

    Speech with a high peak-to-loudness ratio (Piper's voices: about 20 dB) loses a dB or more
    to the limiter at -16 LUFS, which would leave it outside ±1 LU of the target, and each dB
    added back loses part of itself again. Each round runs the limiter over ``blocks()`` (the
    audio, or an even sample of it) to see where a gain lands, and the next gain follows the
    secant through the last two rounds.
    """
    base = normalization_gain_db(measured_lufs, target_lufs)
    if not math.isfinite(measured_lufs):
        return base
    highest = min(base + MAX_MAKEUP_DB, MAX_GAIN_DB)

    def lands(gain: float) -> float:
        return measured_lufs + gain - _limiter_loss_db(blocks(), rate, gain, ceiling_dbtp)

    gain, landed = base, lands(base)
    slope = 1.0  # LU of output per dB of gain; below 1 once the limiter works
    for _ in range(rounds - 1):
        if abs(target_lufs - landed) < 0.2:
            break
        following = min(highest, gain + (target_lufs - landed) / slope)
        if following <= gain:
            break  # already at the most makeup allowed
        after = lands(following)
        slope = min(1.0, max(0.1, (after - landed) / (following - gain)))
        gain, landed = following, after
    return gain
