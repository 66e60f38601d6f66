"""What the built-in job types share: throttled progress reports and scratch files.

Long jobs pass hours of audio through, so they keep it on disk, not in memory: a ``Scratch``
file is written and read back in chunks, every call off the event loop. Scratch files live
under the data directory (``<data_dir>/job-scratch``), not the system temp directory, which is
often a RAM-backed tmpfs, and disappear when closed (or with the process).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from ...config import Settings
from ..context import JobContext

__all__ = ["ProgressReporter", "Scratch", "scratch_dir"]

# Each report renews the job's lease in PostgreSQL: a few a second at most.
_CHECKPOINT_SECONDS = 1.0


class ProgressReporter:
    """Progress from a job type as it goes: stored when the whole percentage changes, and a
    plain cancel checkpoint at least once a second otherwise (both raise ``JobCancelled``)."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx
        self._percent = -1
        self._at = time.monotonic()

    async def report(self, percent: float) -> None:
        value = max(0, min(100, int(percent)))
        now = time.monotonic()
        if value > self._percent:
            self._percent = value
            self._at = now
            await self._ctx.progress(value)
        elif now - self._at >= _CHECKPOINT_SECONDS:
            self._at = now
            await self._ctx.checkpoint()


def scratch_dir(settings: Settings) -> Path:
    return settings.data_dir / "job-scratch"


class Scratch:
    """An anonymous file in ``directory``: appended to, then read back from the start.

    Blocking calls run in a thread (``asyncio.to_thread``), or, for a caller already off the
    loop (``*_blocking``), in that caller's thread.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._file: IO[bytes] | None = None
        self.size = 0

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self._open)
        return self

    def _open(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        # Unlinked at once on POSIX: a crashed worker leaves nothing behind.
        self._file = tempfile.TemporaryFile(dir=self._directory)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            await asyncio.shield(asyncio.to_thread(self._file.close))

    @property
    def file(self) -> IO[bytes]:
        if self._file is None:
            raise RuntimeError("the scratch file is not open")
        return self._file

    def write_blocking(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self.write_blocking, data)

    def rewind_blocking(self) -> None:
        self.file.flush()
        self.file.seek(0)

    async def rewind(self) -> None:
        await asyncio.to_thread(self.rewind_blocking)

    def read_blocking(self, size: int) -> bytes:
        return self.file.read(size)

    def read_at_blocking(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset``, leaving the read position where it is."""
        self.file.flush()
        return os.pread(self.file.fileno(), size, offset)
