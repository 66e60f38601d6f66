"""What a running job sees: its ids, progress reports (cancel checkpoints), files, engines.

A job type gets a ``JobContext`` and nothing else: it stores no rows and makes no HTTP calls
of its own, so the worker decides what an attempt may still do (a lost lease or a cancel
stops it at its next checkpoint).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from ..config import Settings
from ..engines.catalog import EngineRegistry
from ..engines.executor import InferenceExecutor
from ..engines.tts_stream import TextScreen
from ..store import db
from ..store.vectors import VectorStore

__all__ = ["JobCancelled", "JobContext", "JobEngines", "LeaseLost"]

if TYPE_CHECKING:
    from ..store.files import StoredJobFiles as JobFiles


class JobCancelled(Exception):
    """Raised at a checkpoint of a job whose cancellation was requested."""


class LeaseLost(Exception):
    """Raised at a checkpoint of an attempt whose lease another worker has taken over."""


@dataclass(frozen=True, slots=True)
class JobEngines:
    """The engines and executors a process lends its jobs (the server's own, in ``serve``)."""

    registry: EngineRegistry
    tts_executors: Mapping[str, InferenceExecutor]
    stt_executor: InferenceExecutor
    media_executor: InferenceExecutor
    # The process's vectors, for the data-lifecycle jobs; None where it has none (a worker
    # process with local-mode Qdrant, whose folder the server holds).
    vectors: VectorStore | None = None
    # The content policy of a job's workspace, applied to every text the job speaks
    # (``moderation/``, above jobs); None: nothing screened (direct tests).
    screen_for: Callable[[UUID], TextScreen] | None = None


# progress(percent | None) -> whether a cancel was requested; raises LeaseLost.
Reporter = Callable[[int | None], Awaitable[bool]]


@dataclass(slots=True)
class JobContext:
    job_id: UUID
    workspace_id: UUID
    attempt: int  # 1 for the first run
    files: JobFiles
    engines: JobEngines
    settings: Settings
    _report: Reporter
    # The database, for a job type whose resource records its own state (a dub's plan and
    # outputs: store/dubs.py); None where a job runs without one (direct tests).
    pool: db.Pool | None = None

    @property
    def registry(self) -> EngineRegistry:
        return self.engines.registry

    @property
    def tts_executors(self) -> Mapping[str, InferenceExecutor]:
        return self.engines.tts_executors

    @property
    def stt_executor(self) -> InferenceExecutor:
        return self.engines.stt_executor

    @property
    def media_executor(self) -> InferenceExecutor:
        return self.engines.media_executor

    async def progress(self, percent: float) -> None:
        """Store progress (0–100); raises JobCancelled when the job is being cancelled."""
        value = max(0, min(100, int(percent)))
        if await self._report(value):
            raise JobCancelled(str(self.job_id))

    async def checkpoint(self) -> None:
        """A cancel checkpoint without a progress report."""
        if await self._report(None):
            raise JobCancelled(str(self.job_id))
