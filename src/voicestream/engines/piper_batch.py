"""Running a Piper graph on several phoneme sequences at once, and collecting callers to do it.

``run_padded`` pads sequences into one ``[batch, phonemes]`` tensor, runs the graph once with
each item's true length in ``input_lengths``, and cuts each item's audio back to its own length:
``frames × hop`` when the graph's durations are exposed (the length regulator's frame counts, so
the cut is exact), otherwise by trimming the quiet tail that the padding decodes to, keeping a
margin so speech is never cut.

``MicroBatcher`` is what makes concurrent requests share those runs on a GPU: the first caller
to arrive waits ``window_s`` (or until ``max_batch`` items are in), then runs everything that came
in meanwhile in one call, and every caller gets its own items back. Requests whose scales differ
(another speed) cannot share a run, so they are collected separately. On a GPU one batched run
costs about as much as one single run; on a CPU batching only adds the window, so the engine
enables it there only when asked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["BatchItem", "BatchStats", "ItemAudio", "MicroBatcher", "RunGraph", "run_padded"]

Scales = tuple[float, float, float]  # noise_scale, length_scale, noise_w
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
# (ids [B, L], lengths [B], scales [3], speaker ids [B] or None) -> (audio [B, T], frames [B, L]
# per phoneme id or None when the graph does not expose them).
RunGraph = Callable[
    [IntArray, IntArray, FloatArray, IntArray | None], tuple[FloatArray, FloatArray | None]
]

# Trimming without durations: a frame counts as speech above this fraction of the item's peak;
# the padding decodes to a hum about 6 % of peak on en_US-joe-medium, so 12 % leaves a margin.
_QUIET = 0.12
_TAIL_MARGIN_S = 0.12


@dataclass(frozen=True, slots=True)
class BatchItem:
    ids: Sequence[int]
    speaker: int = 0


@dataclass(frozen=True, slots=True)
class ItemAudio:
    audio: FloatArray  # mono float samples, this item only
    frames: FloatArray | None  # per id, how many hops it lasts (None: graph gives no durations)


@dataclass(slots=True)
class BatchStats:
    """What the batcher has done so far (for tests and metrics)."""

    runs: int = 0
    items: int = 0
    largest: int = 0


def run_padded(
    run: RunGraph,
    items: Sequence[BatchItem],
    scales: Scales,
    *,
    hop: int,
    multi_speaker: bool,
    rate: int,
) -> list[ItemAudio]:
    """One graph call for all ``items``; each gets its own audio back."""
    lengths = np.array([len(item.ids) for item in items], dtype=np.int64)
    ids = np.zeros((len(items), int(lengths.max())), dtype=np.int64)
    for row, item in enumerate(items):
        ids[row, : len(item.ids)] = item.ids
    speakers = np.array([item.speaker for item in items], dtype=np.int64) if multi_speaker else None
    audio, frames = run(ids, lengths, np.array(scales, dtype=np.float32), speakers)
    results: list[ItemAudio] = []
    for row, length in enumerate(lengths.tolist()):
        samples = audio[row]
        if frames is not None:
            own = frames[row, :length]
            samples = samples[: round(float(own.sum())) * hop]
            results.append(ItemAudio(samples, own))
        else:
            results.append(ItemAudio(samples if len(items) == 1 else _trim(samples, rate), None))
    return results


def _trim(samples: FloatArray, rate: int) -> FloatArray:
    """Cut the padding's quiet tail, conservatively: keep a margin after the last loud frame."""
    if samples.size == 0:
        return samples
    peak = float(np.max(np.abs(samples)))
    if peak <= 0.0:
        return samples[:0]
    loud = np.flatnonzero(np.abs(samples) > peak * _QUIET)
    end = int(loud[-1]) + 1 + int(_TAIL_MARGIN_S * rate)
    return samples[: min(end, samples.size)]


@dataclass(slots=True)
class _Request:
    items: Sequence[BatchItem]
    done: threading.Event = field(default_factory=threading.Event)
    result: list[ItemAudio] | None = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Pending:
    requests: list[_Request] = field(default_factory=list)
    items: int = 0
    full: threading.Event = field(default_factory=threading.Event)


class MicroBatcher:
    """Collects concurrent syntheses of one voice for ``window_s`` and runs them together.

    Thread-safe; ``synthesize`` blocks its caller until its own items are done.
    """

    def __init__(
        self,
        run: RunGraph,
        *,
        hop: int,
        rate: int,
        multi_speaker: bool,
        window_s: float,
        max_batch: int = 16,
    ) -> None:
        if window_s < 0 or max_batch < 1:
            raise ValueError("window_s must be >= 0 and max_batch >= 1")
        self._run = run
        self._hop = hop
        self._rate = rate
        self._multi_speaker = multi_speaker
        self.window_s = window_s
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: dict[Scales, _Pending] = {}
        self.stats = BatchStats()

    def synthesize(self, items: Sequence[BatchItem], scales: Scales) -> list[ItemAudio]:
        """Audio for ``items``, run together with whatever other callers send meanwhile."""
        if not items:
            return []
        if len(items) >= self.max_batch:
            return self._execute(list(items), scales)
        request = _Request(items)
        with self._lock:
            pending = self._pending.get(scales)
            leader = pending is None
            if pending is None:
                pending = self._pending[scales] = _Pending()
            pending.requests.append(request)
            pending.items += len(items)
            if pending.items >= self.max_batch:
                # Full: nobody else may join; the leader stops waiting.
                del self._pending[scales]
                pending.full.set()
        if leader:
            self._lead(pending, scales)
        else:
            request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _lead(self, pending: _Pending, scales: Scales) -> None:
        deadline = time.monotonic() + self.window_s
        while not pending.full.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            pending.full.wait(left)
        with self._lock:
            if self._pending.get(scales) is pending:
                del self._pending[scales]
        everything = [item for request in pending.requests for item in request.items]
        try:
            results = self._execute(everything, scales)
        except BaseException as exc:  # every waiter must wake, whatever went wrong
            for request in pending.requests:
                request.error = exc
                request.done.set()
            raise
        cursor = 0
        for request in pending.requests:
            request.result = results[cursor : cursor + len(request.items)]
            cursor += len(request.items)
            request.done.set()

    def _execute(self, items: list[BatchItem], scales: Scales) -> list[ItemAudio]:
        with self._lock:
            self.stats.runs += 1
            self.stats.items += len(items)
            self.stats.largest = max(self.stats.largest, len(items))
        return run_padded(
            self._run,
            items,
            scales,
            hop=self._hop,
            multi_speaker=self._multi_speaker,
            rate=self._rate,
        )
