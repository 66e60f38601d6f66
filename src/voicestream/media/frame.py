"""The one audio unit that flows through voicestream."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AudioFrame"]

BYTES_PER_SAMPLE = 2  # s16le mono everywhere inside the server


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """A run of mono signed 16-bit little-endian PCM.

    ``pts`` is the frame's start, in seconds from the start of its stream.
    """

    pcm: bytes
    sample_rate: int
    pts: float = 0.0

    def __post_init__(self) -> None:
        if len(self.pcm) % BYTES_PER_SAMPLE:
            raise ValueError("PCM s16le needs an even number of bytes")
        if self.sample_rate <= 0:
            raise ValueError("sample_rate must be positive")

    @property
    def samples(self) -> int:
        return len(self.pcm) // BYTES_PER_SAMPLE

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples / self.sample_rate
