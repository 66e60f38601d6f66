"""Cutting a byte stream of PCM into fixed-duration frames."""

from __future__ import annotations

__all__ = ["Framer", "frame_bytes"]


def frame_bytes(sample_rate: int, frame_ms: int = 20, bytes_per_sample: int = 2) -> int:
    """Bytes in one ``frame_ms`` frame; the frame must hold a whole number of samples."""
    if sample_rate <= 0 or frame_ms <= 0 or bytes_per_sample <= 0:
        raise ValueError("sample_rate, frame_ms and bytes_per_sample must be positive")
    samples, leftover = divmod(sample_rate * frame_ms, 1000)
    if leftover:
        raise ValueError(f"{frame_ms} ms at {sample_rate} Hz is not a whole number of samples")
    return samples * bytes_per_sample


class Framer:
    """Buffers pushed PCM and hands it back as whole frames.

    Works on bytes, not samples, so a push may end in the middle of a sample and the
    next push completes it.
    """

    __slots__ = ("_buffer", "frame_ms", "frame_size", "sample_rate")

    def __init__(self, sample_rate: int, frame_ms: int = 20, bytes_per_sample: int = 2) -> None:
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_size = frame_bytes(sample_rate, frame_ms, bytes_per_sample)
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes buffered towards the next frame."""
        return len(self._buffer)

    def push(self, pcm: bytes) -> list[bytes]:
        """Every frame that is complete now; the rest waits for more input."""
        size = self.frame_size
        buffer = self._buffer
        if not buffer and len(pcm) < size:
            buffer += pcm
            return []
        buffer += pcm
        whole = len(buffer) - len(buffer) % size
        view = memoryview(buffer)
        try:
            frames = [bytes(view[start : start + size]) for start in range(0, whole, size)]
        finally:
            # A bytearray cannot be resized while a view of it is alive.
            view.release()
        del buffer[:whole]
        return frames

    def flush(self, pad: bool = False) -> bytes:
        """The incomplete remainder, zero-padded to a whole frame if ``pad``; empties the buffer."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        if pad and rest:
            rest += bytes(self.frame_size - len(rest))
        return rest
