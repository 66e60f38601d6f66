"""The agent's outgoing audio: a bounded queue of 20 ms frames that barge-in can empty at once.

Transports pull frames from here at playback pace (a WebRTC track's ``recv``, or the socket
sender's clock), so at most a frame or two is ever in flight and an interruption silences the
agent within one frame: ``clear`` drops everything not yet handed out. Audio is the data lane;
``clear`` is the control lane that bypasses it.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Speaker"]


class Speaker:
    def __init__(self, sample_rate: int = 16000, frame_ms: int = 20, max_seconds: float = 60.0):
        self.sample_rate = sample_rate
        self.frame_bytes = sample_rate * frame_ms // 1000 * 2
        self._frames: deque[bytes] = deque()
        self._max_frames = int(max_seconds * 1000 / frame_ms)
        self._partial = bytearray()
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._empty = asyncio.Event()  # nothing left to hand out
        self._empty.set()
        self.frames_out = 0  # frames handed to the transport since the last clear
        # Counted from the start, clears included (queued = dequeued + waiting): a turn notes
        # ``frames_queued`` when its audio starts; ``frames_dequeued`` (handed out, or dropped
        # by a clear) later says how far into it playback got.
        self.frames_queued = 0
        self.frames_dequeued = 0

    @property
    def pending_seconds(self) -> float:
        return len(self._frames) * self.frame_bytes / 2 / self.sample_rate

    @property
    def active(self) -> bool:
        return bool(self._frames) or bool(self._partial)

    async def put(self, pcm: bytes) -> None:
        """Queue agent audio (mono s16le at ``sample_rate``); waits while the queue is full."""
        if pcm:
            self._empty.clear()
        self._partial += pcm
        while len(self._partial) >= self.frame_bytes:
            while len(self._frames) >= self._max_frames:
                self._room.clear()
                await self._room.wait()
            self._frames.append(bytes(self._partial[: self.frame_bytes]))
            self.frames_queued += 1
            del self._partial[: self.frame_bytes]
            self._readable.set()

    def flush_partial(self) -> None:
        """End of an utterance: pad the last partial frame with silence and queue it."""
        if self._partial:
            pad = self.frame_bytes - len(self._partial)
            self._frames.append(bytes(self._partial) + bytes(pad))
            self.frames_queued += 1
            self._partial.clear()
            self._readable.set()

    def get_nowait(self) -> bytes | None:
        if not self._frames:
            return None
        frame = self._frames.popleft()
        self.frames_out += 1
        self.frames_dequeued += 1
        if not self._frames:
            self._readable.clear()
            if not self._partial:
                self._empty.set()
        self._room.set()
        return frame

    async def get(self) -> bytes:
        while not self._frames:
            await self._readable.wait()
        frame = self.get_nowait()
        assert frame is not None
        return frame

    def clear(self) -> int:
        """Barge-in: drop every queued frame; returns how many were dropped."""
        dropped = len(self._frames)
        self.frames_dequeued += dropped
        self._frames.clear()
        self._partial.clear()
        self._readable.clear()
        self._room.set()
        self._empty.set()
        self.frames_out = 0
        return dropped

    async def drained(self) -> None:
        """Wait until every queued frame has been handed to the transport."""
        await self._empty.wait()
