"""Running jobs: one attempt per message, under a lease renewed while the job runs.

taskiq calls ``JobWorker.handle`` with a job id. The worker claims the job in PostgreSQL
(nothing happens when it is not this worker's to run: finished, running elsewhere under a
live lease, or not yet due), runs its type with a ``JobContext``, renews the lease as it goes,
and ends the attempt through ``JobService`` — fenced by the lease token, so an attempt that
lost its lease to another worker changes nothing. ``handle`` never raises: taskiq would log
a traceback and the job's fate is recorded in PostgreSQL anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar
from uuid import UUID, uuid4

from ..config import Settings
from ..engines.tts_stream import TEXT_SCREEN
from ..errors import ServiceUnavailable
from ..store import jobs as store
from ..store.files import StoredJobFiles
from ..store.jobs import JobRecord
from ..store.services import outage_error
from .context import JobCancelled, JobContext, JobEngines, LeaseLost
from .lifecycle import JobService
from .registry import JobOutcome, job_type

__all__ = ["FilesFactory", "JobWorker"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_OUTAGE_RETRY_S: Final = 0.5

# A job's own view of the file store: its inputs, and outputs that a rerun replaces.
FilesFactory = Callable[[JobRecord], StoredJobFiles]


class JobWorker:
    def __init__(
        self,
        service: JobService,
        engines: JobEngines,
        settings: Settings,
        files: FilesFactory,
    ) -> None:
        self._service = service
        self._engines = engines
        self._settings = settings
        self._files = files
        self._lease_s = settings.jobs_lease_seconds
        self._attempts: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def running(self) -> int:
        return len(self._attempts)

    async def handle(self, job_id: str) -> None:
        """The taskiq task: one delivery of "look at job ``job_id``"."""
        try:
            jid = UUID(job_id)
        except (ValueError, TypeError):
            log.warning("job stream: ignoring a message with a malformed job id %r", job_id)
            return
        if self._closing:
            # Shutting down: the message is acknowledged, but the job stays queued and the
            # sweeper puts it back on the stream for another worker.
            return
        token = uuid4()
        try:
            job = await store.claim(self._service.pool, jid, token, self._lease_s)
        except Exception as exc:
            if outage_error(exc) is None:
                log.exception("claiming job %s failed", jid)
            else:
                log.warning(
                    "cannot claim job %s now (%s); the sweeper will offer it again", jid, exc
                )
            return
        if job is None:
            return  # done, running elsewhere, cancelled, or not yet due: nothing to do
        attempt = asyncio.create_task(self._attempt(job, token), name=f"job-{jid}")
        self._attempts.add(attempt)
        try:
            # Shielded: taskiq cancelling its callback must not cut an attempt short without
            # the lease being given back (close() does that).
            await asyncio.shield(attempt)
        except asyncio.CancelledError:
            pass
        finally:
            if attempt.done():
                self._attempts.discard(attempt)

    async def close(self) -> None:
        """Stop taking jobs; the running attempts stop and give their jobs back at once."""
        self._closing = True
        for attempt in list(self._attempts):
            attempt.cancel()
        if self._attempts:
            await asyncio.wait(self._attempts, timeout=10)

    # --- one attempt ----------------------------------------------------------------------

    async def _attempt(self, job: JobRecord, token: UUID) -> None:
        lost = asyncio.Event()
        cancel_requested = asyncio.Event()

        async def report(progress: int | None) -> bool:
            state = await store.renew_lease(
                self._service.pool, job.id, token, self._lease_s, progress=progress
            )
            if state is None:
                lost.set()
                raise LeaseLost(str(job.id))
            if state.cancel_requested:
                cancel_requested.set()
            return state.cancel_requested

        run = asyncio.create_task(self._run(job, token, report))
        beat = asyncio.create_task(self._heartbeat(job, token, lost, cancel_requested, run))
        started = time.monotonic()
        try:
            outcome = await asyncio.shield(run)
        except asyncio.CancelledError:
            run.cancel()
            with contextlib.suppress(BaseException):
                await run
            if not lost.is_set():
                await self._persist(
                    lambda: store.release_lease(self._service.pool, job.id, token), job
                )
                log.info("job %s given back (shutting down)", job.id)
            return
        except JobCancelled:
            await self._persist(lambda: self._service.cancelled(job, token), job)
            log.info("job %s cancelled at a checkpoint", job.id)
            return
        except LeaseLost:
            log.warning(
                "job %s: its lease was taken over; this attempt's outcome is dropped", job.id
            )
            return
        except Exception as exc:
            if lost.is_set():
                return
            failure = exc
            await self._persist(lambda: self._service.fail(job, token, failure), job)
            return
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        if lost.is_set():
            return
        if await self._persist(lambda: self._service.complete(job, token, outcome), job):
            log.info(
                "job %s (%s) completed in %.2f s", job.id, job.type, time.monotonic() - started
            )

    async def _run(
        self, job: JobRecord, token: UUID, report: Callable[[int | None], Awaitable[bool]]
    ) -> JobOutcome:
        kind = job_type(job.type)
        job_input = kind.input_model.model_validate(job.input)
        ctx = JobContext(
            job_id=job.id,
            workspace_id=job.workspace_id,
            attempt=job.attempts,
            files=self._files(job),
            engines=self._engines,
            settings=self._settings,
            _report=report,
            pool=self._service.pool,
        )
        screen_for = self._engines.screen_for
        # Every TTSStream the job opens picks the screen up (engines/tts_stream.py); this
        # task is the job's own, so nothing else sees it.
        if screen_for is not None:
            TEXT_SCREEN.set(screen_for(job.workspace_id))
        outcome = await kind.run(ctx, job_input)
        if not isinstance(outcome, JobOutcome):
            raise TypeError(f"job type {job.type!r} returned {type(outcome).__name__}")
        return outcome

    async def _heartbeat(
        self,
        job: JobRecord,
        token: UUID,
        lost: asyncio.Event,
        cancel_requested: asyncio.Event,
        run: asyncio.Task[JobOutcome],
    ) -> None:
        """Renew the lease a few times per lease period; a lost lease stops the run at once
        (another worker has the job), a cancel request waits for the next checkpoint."""
        interval = self._lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                state = await store.renew_lease(self._service.pool, job.id, token, self._lease_s)
            except ServiceUnavailable as exc:
                log.warning("job %s: cannot renew its lease now (%s)", job.id, exc)
                continue
            if state is None:
                lost.set()
                run.cancel()
                return
            if state.cancel_requested:
                cancel_requested.set()

    async def _persist(self, write: Callable[[], Awaitable[_T]], job: JobRecord) -> _T | None:
        """Run the write that ends an attempt, riding out a database outage for up to a lease
        period (after that the lease lapses and another attempt runs: effects are idempotent)."""
        deadline = time.monotonic() + self._lease_s
        while True:
            try:
                return await write()
            except Exception as exc:
                if outage_error(exc) is None:
                    log.exception("ending job %s's attempt failed", job.id)
                    return None
                if time.monotonic() >= deadline:
                    log.warning("job %s: could not record its outcome (%s)", job.id, exc)
                    return None
                await asyncio.sleep(_OUTAGE_RETRY_S)
