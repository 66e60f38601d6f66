"""A job's life: submit, cancel, and how an attempt ends (completed, retried, dead, cancelled).

Every change of state happens in one transaction with its effects (``effects.py``): the job
row and its outbox row and credit reservation at submission; the final state, the ledger
posting and the webhook event at the end. The end of an attempt is fenced by its lease
token, so of two workers that both ran a job (one presumed dead) only the lease holder's
outcome counts, and the effects happen once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID, uuid4

from ..billing.ledger import CreditPolicy
from ..config import Settings
from ..errors import Conflict, ValidationFailed, VoiceStreamError
from ..protocols.json_messages import validate_model
from ..store import db
from ..store import jobs as store
from ..store.jobs import JobPage, JobRecord, JobRepository
from . import effects
from .registry import NO_FILES, InputFiles, JobOutcome, job_type

__all__ = ["JobService", "Submission", "error_of", "retry_delay"]

log = logging.getLogger(__name__)

WORKER_LOST: Final = "worker_lost"


@dataclass(frozen=True, slots=True)
class Submission:
    job: JobRecord
    created: bool  # False: an earlier request with the same Idempotency-Key made it


def request_hash(type_name: str, job_input: dict[str, Any]) -> bytes:
    """What "the same body" means for an Idempotency-Key: the type and the input as JSON with
    sorted keys, so key order and whitespace do not matter."""
    canonical = json.dumps(
        {"type": type_name, "input": job_input}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).digest()


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter ("equal jitter"): half the delay fixed, half random, so
    jobs that failed together do not all come back together."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return float(delay / 2 + random.uniform(0, delay / 2))  # load spreading, not secrets


def error_of(exc: BaseException) -> tuple[dict[str, Any], bool]:
    """(the job's ``error``, whether trying again can help). The caller's mistakes (a missing
    file, audio that does not decode) fail at once; anything else is retried."""
    if isinstance(exc, VoiceStreamError):
        permanent = exc.http_status < 500 and exc.http_status not in (408, 429)
        return {"code": exc.code, "message": exc.message}, not permanent
    return {"code": "job_failed", "message": f"{type(exc).__name__}: {exc}"[:2000]}, True


def _event_data(job: JobRecord) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "type": job.type,
        "status": job.status,
        "result": job.result,
        "error": job.error,
        "attempts": job.attempts,
    }


class JobService:
    """Submission and the API's reads and cancels; the worker's ends of attempts."""

    def __init__(
        self, pool: db.Pool, settings: Settings, on_enqueued: Callable[[], None] = lambda: None
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._on_enqueued = on_enqueued
        self.repository = JobRepository(pool)
        self._policy = CreditPolicy.from_settings(settings)

    @property
    def pool(self) -> db.Pool:
        return self._pool

    # --- the API ------------------------------------------------------------------------

    async def submit(
        self,
        workspace_id: UUID,
        type_name: str,
        raw_input: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        user_id: UUID | None = None,
        key_id: UUID | None = None,
        files: InputFiles = NO_FILES,
        with_job: Callable[[db.Connection, JobRecord], Awaitable[None]] | None = None,
    ) -> Submission:
        """Store a job and its outbox row (and reserve its credits) in one transaction.

        Raises:
            ValidationFailed: unknown type, input not the type's shape, or the key was used
                with another body.
            Conflict: a request with the same key is still in flight.
            InsufficientCredits: the estimate exceeds the balance (nothing is stored).

        ``files`` lets the type's estimate look at the files the input names (their size, a
        recording's duration), so the reservation follows the file. ``with_job`` writes the
        resource the job works on (a dub) in the same transaction: both are stored or neither.
        """
        kind = job_type(type_name)
        job_input = validate_model(kind.input_model, raw_input, "input")
        # Before the transaction: a probe of a file reads storage, and holds no lock meanwhile.
        credits = await kind.estimate(job_input, files)
        digest = request_hash(type_name, raw_input)
        async with self._pool.acquire() as conn, conn.transaction():
            if idempotency_key is not None:
                existing = await self._replay(conn, workspace_id, idempotency_key, digest)
                if existing is not None:
                    return Submission(existing, created=False)
            job = await store.insert_job(
                conn,
                store.NewJob(
                    id=uuid4(),
                    workspace_id=workspace_id,
                    type=type_name,
                    input=job_input.model_dump(mode="json"),
                    max_attempts=self._settings.jobs_max_attempts,
                    idempotency_key=idempotency_key,
                    request_hash=digest,
                    created_by_user=user_id,
                    created_by_key=key_id,
                ),
            )
            await store.add_outbox(conn, job.id)
            await effects.reserve_credits(conn, workspace_id, job.id, credits, self._policy)
            if with_job is not None:
                await with_job(conn, job)
        self._on_enqueued()
        return Submission(job, created=True)

    async def _replay(
        self, conn: db.Connection, workspace_id: UUID, key: str, digest: bytes
    ) -> JobRecord | None:
        """The job an earlier request with ``key`` made, if any (held until commit)."""
        if not await store.try_idempotency_lock(conn, workspace_id, key):
            raise Conflict(
                "a request with this Idempotency-Key is still being processed; retry shortly",
                details={"idempotency_key": key},
            )
        existing = await store.find_by_idempotency_key(conn, workspace_id, key)
        if existing is not None and existing.request_hash != digest:
            raise ValidationFailed(
                "this Idempotency-Key was used with a different request body; "
                "use a new key for a new job",
                details={"idempotency_key": key, "job_id": str(existing.id)},
            )
        return existing

    async def get(self, workspace_id: UUID, job_id: str | UUID) -> JobRecord:
        return await self.repository.get(workspace_id, job_id)

    async def list(
        self,
        workspace_id: UUID,
        *,
        limit: int,
        cursor: str | None,
        statuses: Sequence[str] = (),
        types: Sequence[str] = (),
    ) -> JobPage:
        return await self.repository.list(
            workspace_id, limit=limit, cursor=cursor, statuses=statuses, types=types
        )

    async def cancel(self, workspace_id: UUID, job_id: str | UUID) -> JobRecord:
        """A queued job is cancelled at once; a running one at its next checkpoint (its
        ``cancel_requested_at`` says so meanwhile). Conflict for a finished job."""
        job = await self.repository.get(workspace_id, job_id)  # 404 first, before any write
        async with self._pool.acquire() as conn, conn.transaction():
            job = await store.request_cancel(conn, workspace_id, job.id)
            if job.finished:
                # Raised inside the transaction: the request is not noted on a finished job.
                raise Conflict(
                    f"job {job.id} is already {job.status}",
                    details={"status": job.status},
                )
            if job.status == "queued":
                job = await self._end(conn, job, "cancelled")
        return job

    # --- the end of an attempt ------------------------------------------------------------

    async def complete(self, job: JobRecord, token: UUID, outcome: JobOutcome) -> bool:
        """False when the attempt had lost its lease: its outcome is dropped."""
        async with self._pool.acquire() as conn, conn.transaction():
            if await store.lock_job(conn, job.id, token, ("running",)) is None:
                return False
            done = await store.finish(conn, job.id, "completed", result=outcome.result)
            await effects.settle_credits(
                conn, job.workspace_id, job.id, outcome.credits_used, self._policy
            )
            await effects.job_finished(
                conn, job.workspace_id, job.id, "completed", _event_data(done)
            )
        return True

    async def fail(self, job: JobRecord, token: UUID, exc: BaseException) -> JobRecord | None:
        """Retry after a backoff, or (no attempt left, or a permanent error) dead-letter it
        with the error. None when the attempt had lost its lease."""
        error, retryable = error_of(exc)
        async with self._pool.acquire() as conn, conn.transaction():
            current = await store.lock_job(conn, job.id, token, ("running",))
            if current is None:
                return None
            if retryable and current.attempts < current.max_attempts:
                delay = retry_delay(
                    current.attempts,
                    self._settings.jobs_retry_base_seconds,
                    self._settings.jobs_retry_max_seconds,
                )
                await store.schedule_retry(conn, job.id, error, delay)
                log.warning(
                    "job %s (%s) attempt %d/%d failed, retrying in %.1f s: %s",
                    job.id, job.type, current.attempts, current.max_attempts, delay,
                    error["message"],
                )  # fmt: skip
                return await store.lock_job(conn, job.id, None, ("queued",))
            log.warning(
                "job %s (%s) failed after %d attempt(s): %s",
                job.id, job.type, current.attempts, error["message"],
            )  # fmt: skip
            return await self._end(conn, current, "failed", error=error)

    async def cancelled(self, job: JobRecord, token: UUID) -> bool:
        """The attempt stopped at a checkpoint because a cancel was asked for."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await store.lock_job(conn, job.id, token, ("running",))
            if current is None:
                return False
            await self._end(conn, current, "cancelled")
        return True

    async def end_lapsed(self) -> int:
        """Jobs whose worker died and that must not run again: cancelled when a cancel was
        asked for, else dead (no attempt left). Returns how many ended."""
        ended = 0
        for job in await store.lapsed_leases(self._pool):
            async with self._pool.acquire() as conn, conn.transaction():
                current = await store.lock_job(
                    conn, job.id, job.lease_token, ("running",), lapsed=True
                )
                if current is None:
                    continue
                if current.cancel_requested_at is not None:
                    await self._end(conn, current, "cancelled")
                else:
                    message = (
                        f"the worker running it stopped responding "
                        f"({current.attempts} of {current.max_attempts} attempts)"
                    )
                    error = {"code": WORKER_LOST, "message": message}
                    await self._end(conn, current, "failed", error=error)
                ended += 1
        return ended

    async def _end(
        self,
        conn: db.Connection,
        job: JobRecord,
        status: str,
        *,
        error: dict[str, Any] | None = None,
    ) -> JobRecord:
        assert status in ("failed", "cancelled")
        done = await store.finish(conn, job.id, "failed" if status == "failed" else "cancelled",
                                  error=error)  # fmt: skip
        await effects.void_credits(conn, job.workspace_id, job.id)
        await effects.job_finished(conn, job.workspace_id, job.id, status, _event_data(done))
        return done
