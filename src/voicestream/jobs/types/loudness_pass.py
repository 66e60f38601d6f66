"""The output pass of the job types that render to a scratch file first (``tts``, ``export``):
the gain to a loudness target fitted past the true-peak limiter on an even sample of the file,
then the file read back a block at a time through that gain and the limiter into the output,
every block off the event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Final

from ...media.encode import StreamEncoder
from ...media.loudness import LoudnessMeter, LoudnessNormalizer, fit_gain_db
from ..context import JobContext
from .scratch import ProgressReporter, Scratch

__all__ = [
    "OUTPUT_BLOCK_BYTES",
    "MeteredScratch",
    "Step",
    "fit_scratch_gain",
    "output_step",
    "stream_output",
]

OUTPUT_BLOCK_BYTES: Final = 256 * 1024  # PCM read back per step (~3 s at 44.1 kHz)
# The limiter's effect on loudness is fitted on at most this much of the audio, spread evenly
# over it (each fitting round runs the limiter over the sample once).
_FIT_SAMPLE_SECONDS: Final = 600.0

# Blocking: the next output bytes, and whether that was the end.
Step = Callable[[], tuple[bytes, bool]]


@dataclass(slots=True)
class MeteredScratch:
    """Pass 1's output: the PCM written to the scratch file so far, measured by ``meter`` on
    the way (None: not measured)."""

    scratch: Scratch
    rate: int
    meter: LoudnessMeter | None
    samples: int = 0

    def write(self, pcm: bytes) -> None:
        """Blocking: ``pcm`` (mono s16le at ``rate``) onto the scratch file."""
        if not pcm:
            return
        if self.meter is not None:
            self.meter.feed(pcm)
        self.scratch.write_blocking(pcm)
        self.samples += len(pcm) // 2

    @property
    def seconds(self) -> float:
        return self.samples / self.rate


def fit_scratch_gain(scratch: Scratch, rate: int, measured: float, target: float) -> float:
    """Blocking: the gain that brings the scratch file's audio (measured at ``measured``
    LUFS) to ``target`` after the limiter."""
    blocks = max(1, -(-scratch.size // OUTPUT_BLOCK_BYTES))
    wanted = max(1, int(_FIT_SAMPLE_SECONDS * rate * 2 // OUTPUT_BLOCK_BYTES))
    stride = max(1, blocks // wanted)

    def sample() -> Iterator[bytes]:
        for index in range(0, blocks, stride):
            yield scratch.read_at_blocking(index * OUTPUT_BLOCK_BYTES, OUTPUT_BLOCK_BYTES)

    return fit_gain_db(measured, target, sample, rate)


def output_step(
    scratch: Scratch,
    rate: int,
    gain: float | None,
    encoder: StreamEncoder | None,
    trailer: bytes = b"",
) -> Step:
    """The step that turns the next block of the (rewound) scratch file into output: through
    ``gain`` and the limiter (None: as it is), then ``encoder`` (None: the PCM itself, then
    ``trailer`` at the end)."""
    normalizer = LoudnessNormalizer(rate, gain) if gain is not None else None

    def step() -> tuple[bytes, bool]:
        block = scratch.read_blocking(OUTPUT_BLOCK_BYTES)
        end = not block
        pcm = block if normalizer is None else normalizer.process(block)
        if end and normalizer is not None:
            pcm += normalizer.flush()
        if encoder is None:
            return pcm + (trailer if end else b""), end
        out = encoder.encode(pcm)
        return (out + encoder.finish() if end else out), end

    return step


async def stream_output(
    ctx: JobContext,
    scratch: Scratch,
    step: Step,
    head: bytes,
    progress: ProgressReporter,
    *,
    start: float,
) -> AsyncIterator[bytes]:
    """``head``, then every step's bytes; progress from ``start`` towards 100 as it reads."""
    if head:
        yield head
    total = max(1, scratch.size)
    read = 0
    while True:
        data, end = await ctx.media_executor.run(step)
        if data:
            yield data
        if end:
            return
        read = min(total, read + OUTPUT_BLOCK_BYTES)
        await progress.report(start + (100 - start) * read / total * 0.99)
