"""Jobs and their outbox in PostgreSQL: the truth about every job (``jobs/`` holds the rules).

A job is run by whoever holds its lease: ``claim`` takes it atomically (a queued job that is
due, or a running one whose lease lapsed because its worker died), and every later write of
that attempt names the lease token, so an attempt that lost its lease can change nothing.
Functions that take a ``conn`` run in the caller's transaction, beside the job's other
effects (the ledger, webhook events); the repository reads on the pool.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args
from uuid import UUID

from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store._records import Id, parse_id

__all__ = [
    "FINISHED",
    "JOB_STATUSES",
    "MAX_PAGE_SIZE",
    "JobPage",
    "JobRecord",
    "JobRepository",
    "JobStatus",
    "LeaseState",
    "NewJob",
    "add_outbox",
    "claim",
    "find_by_idempotency_key",
    "finish",
    "idempotency_lock_id",
    "insert_job",
    "lapsed_leases",
    "lock_job",
    "mark_published",
    "release_lease",
    "renew_lease",
    "republish_stale",
    "request_cancel",
    "schedule_retry",
    "take_outbox",
    "try_idempotency_lock",
]

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
JOB_STATUSES: Final[tuple[JobStatus, ...]] = get_args(JobStatus)
FINISHED: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})
MAX_PAGE_SIZE: Final = 200

_COLUMNS = (
    "id, workspace_id, type, input, status, progress, result, error, attempts, max_attempts, "
    "run_after, lease_token, cancel_requested_at, created_at, updated_at, started_at, "
    "finished_at, idempotency_key, request_hash, created_by_user, created_by_key"
)
_CURSOR_PREFIX = "job:"


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: UUID
    workspace_id: UUID
    type: str
    input: dict[str, Any]
    status: JobStatus
    progress: int
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: int
    max_attempts: int
    run_after: datetime
    lease_token: UUID | None
    cancel_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    idempotency_key: str | None
    request_hash: bytes | None
    created_by_user: UUID | None
    created_by_key: UUID | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True, slots=True)
class NewJob:
    id: UUID
    workspace_id: UUID
    type: str
    input: dict[str, Any]
    max_attempts: int
    idempotency_key: str | None
    request_hash: bytes | None
    created_by_user: UUID | None
    created_by_key: UUID | None


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[JobRecord]
    next_cursor: str | None  # None on the last page


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What a running attempt learns when it writes: whether a cancel was asked for."""

    cancel_requested: bool


def _json(value: Any) -> Any:
    # No JSON codec is registered on the pool: jsonb arrives as its text.
    return json.loads(value) if isinstance(value, str) else value


def _record(row: db.Record) -> JobRecord:
    return JobRecord(
        id=row["id"],
        workspace_id=row["workspace_id"],
        type=row["type"],
        input=_json(row["input"]),
        status=row["status"],
        progress=row["progress"],
        result=_json(row["result"]),
        error=_json(row["error"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_after=row["run_after"],
        lease_token=row["lease_token"],
        cancel_requested_at=row["cancel_requested_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        idempotency_key=row["idempotency_key"],
        request_hash=bytes(row["request_hash"]) if row["request_hash"] is not None else None,
        created_by_user=row["created_by_user"],
        created_by_key=row["created_by_key"],
    )


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


# --- submission ---------------------------------------------------------------------------


def idempotency_lock_id(workspace_id: UUID, key: str) -> int:
    """The transaction-level advisory lock one (workspace, Idempotency-Key) is submitted under:
    a second request with that key while the first is still in flight cannot take it (409)."""
    digest = hashlib.sha256(f"voicestream.jobs:{workspace_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def try_idempotency_lock(conn: db.Connection, workspace_id: UUID, key: str) -> bool:
    """Inside the caller's transaction: False when another submission holds the key."""
    taken: bool = await conn.fetchval(
        "SELECT pg_try_advisory_xact_lock($1)", idempotency_lock_id(workspace_id, key)
    )
    return taken


async def find_by_idempotency_key(
    conn: db.Connection, workspace_id: UUID, key: str
) -> JobRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM jobs WHERE workspace_id = $1 AND idempotency_key = $2",
        workspace_id,
        key,
    )
    return _record(row) if row is not None else None


async def insert_job(conn: db.Connection, job: NewJob) -> JobRecord:
    row = await conn.fetchrow(
        f"""
        INSERT INTO jobs (id, workspace_id, type, input, max_attempts, idempotency_key,
                          request_hash, created_by_user, created_by_key)
        VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)
        RETURNING {_COLUMNS}
        """,
        job.id,
        job.workspace_id,
        job.type,
        _dumps(job.input),
        job.max_attempts,
        job.idempotency_key,
        job.request_hash,
        job.created_by_user,
        job.created_by_key,
    )
    return _record(row)


async def add_outbox(
    conn: db.Connection, job_id: UUID, *, deliver_after: datetime | None = None
) -> None:
    await conn.execute(
        "INSERT INTO job_outbox (job_id, deliver_after) VALUES ($1, coalesce($2, now()))",
        job_id,
        deliver_after,
    )


# --- the outbox relay and the sweeper -----------------------------------------------------


async def take_outbox(conn: db.Connection, limit: int) -> list[tuple[int, UUID]]:
    """Inside the caller's transaction: due outbox rows, locked (other relays skip them)."""
    rows = await conn.fetch(
        "SELECT id, job_id FROM job_outbox WHERE deliver_after <= now() "
        "ORDER BY deliver_after, id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [(row["id"], row["job_id"]) for row in rows]


async def mark_published(conn: db.Connection, ids: Sequence[int], job_ids: Sequence[UUID]) -> None:
    """The rows ``ids`` went to the stream: delete them, note when their jobs were published."""
    await conn.execute("DELETE FROM job_outbox WHERE id = ANY($1::bigint[])", list(ids))
    await conn.execute(
        "UPDATE jobs SET published_at = now() WHERE id = ANY($1::uuid[])", list(set(job_ids))
    )


async def republish_stale(pool: db.Pool, stale_seconds: float) -> int:
    """Outbox rows for jobs that should run but whose message may be gone: queued and due but
    not published for ``stale_seconds`` (Redis lost it), or running on a lapsed lease and not
    published since it lapsed (the worker died). Duplicates are harmless: ``claim`` runs a job
    once. Returns how many were added."""
    rows = await pool.fetch(
        """
        INSERT INTO job_outbox (job_id)
        SELECT j.id FROM jobs j
        WHERE ((j.status = 'queued' AND j.run_after <= now())
               OR (j.status = 'running' AND j.lease_until < now()))
          AND (j.published_at IS NULL
               OR j.published_at < now() - make_interval(secs => $1)
               OR (j.status = 'running' AND j.published_at < j.lease_until))
          AND NOT EXISTS (SELECT 1 FROM job_outbox o WHERE o.job_id = j.id)
        LIMIT 500
        RETURNING job_id
        """,
        stale_seconds,
    )
    return len(rows)


async def lapsed_leases(pool: db.Pool) -> list[JobRecord]:
    """Running jobs whose worker stopped renewing and that must not simply run again: a cancel
    was asked for, or no attempt is left."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM jobs WHERE status = 'running' AND lease_until < now() "
        "AND (cancel_requested_at IS NOT NULL OR attempts >= max_attempts) LIMIT 100"
    )
    return [_record(row) for row in rows]


# --- a worker's attempt -------------------------------------------------------------------


async def claim(pool: db.Pool, job_id: UUID, token: UUID, lease_seconds: float) -> JobRecord | None:
    """Start an attempt: the job, now running under ``token``; None when it is not this
    worker's to run (finished, running under a live lease, not yet due, being cancelled, or out
    of attempts)."""
    row = await pool.fetchrow(
        f"""
        UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_token = $2,
               lease_until = now() + make_interval(secs => $3), progress = 0,
               started_at = coalesce(started_at, now()), updated_at = now()
        WHERE id = $1 AND cancel_requested_at IS NULL AND attempts < max_attempts
          AND ((status = 'queued' AND run_after <= now())
               OR (status = 'running' AND lease_until < now()))
        RETURNING {_COLUMNS}
        """,
        job_id,
        token,
        lease_seconds,
    )
    return _record(row) if row is not None else None


async def renew_lease(
    pool: db.Pool,
    job_id: UUID,
    token: UUID,
    lease_seconds: float,
    *,
    progress: int | None = None,
) -> LeaseState | None:
    """Extend the attempt's lease (and store its progress); None when the lease is lost."""
    row = await pool.fetchrow(
        """
        UPDATE jobs SET lease_until = now() + make_interval(secs => $3),
               progress = coalesce($4, progress), updated_at = now()
        WHERE id = $1 AND lease_token = $2 AND status = 'running'
        RETURNING cancel_requested_at
        """,
        job_id,
        token,
        lease_seconds,
        progress,
    )
    if row is None:
        return None
    return LeaseState(cancel_requested=row["cancel_requested_at"] is not None)


async def lock_job(
    conn: db.Connection,
    job_id: UUID,
    token: UUID | None,
    statuses: Sequence[str],
    *,
    lapsed: bool = False,
) -> JobRecord | None:
    """Inside the caller's transaction: the job, row-locked, when it is in one of ``statuses``
    and (``token`` given) still held under that lease (``lapsed``: a lease that has run out);
    else None (someone else finished or took it)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM jobs WHERE id = $1 AND status = ANY($2::text[]) "
        "AND ($3::uuid IS NULL OR lease_token = $3) AND (NOT $4 OR lease_until < now()) "
        "FOR UPDATE",
        job_id,
        list(statuses),
        token,
        lapsed,
    )
    return _record(row) if row is not None else None


async def finish(
    conn: db.Connection,
    job_id: UUID,
    status: Literal["completed", "failed", "cancelled"],
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> JobRecord:
    """Inside the caller's transaction, on a row ``lock_job`` returned: the final state."""
    row = await conn.fetchrow(
        f"""
        UPDATE jobs SET status = $2, result = $3::jsonb, error = coalesce($4::jsonb, error),
               progress = CASE WHEN $2 = 'completed' THEN 100 ELSE progress END,
               lease_token = NULL, lease_until = NULL, finished_at = now(), updated_at = now()
        WHERE id = $1
        RETURNING {_COLUMNS}
        """,
        job_id,
        status,
        _dumps(result),
        _dumps(error),
    )
    return _record(row)


async def schedule_retry(
    conn: db.Connection, job_id: UUID, error: dict[str, Any], delay_seconds: float
) -> datetime:
    """Inside the caller's transaction, on a locked row: queued again after ``delay_seconds``,
    with an outbox row due then. Returns when."""
    run_after: datetime = await conn.fetchval(
        """
        UPDATE jobs SET status = 'queued', error = $2::jsonb, lease_token = NULL,
               lease_until = NULL, run_after = now() + make_interval(secs => $3),
               updated_at = now()
        WHERE id = $1
        RETURNING run_after
        """,
        job_id,
        _dumps(error),
        delay_seconds,
    )
    await add_outbox(conn, job_id, deliver_after=run_after)
    return run_after


async def release_lease(pool: db.Pool, job_id: UUID, token: UUID) -> bool:
    """Give a running attempt back unfinished (the worker is shutting down): queued again at
    once, the attempt not counted. False when the lease was already lost."""
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            """
            UPDATE jobs SET status = 'queued', attempts = greatest(attempts - 1, 0),
                   lease_token = NULL, lease_until = NULL, run_after = now(), updated_at = now()
            WHERE id = $1 AND lease_token = $2 AND status = 'running'
            RETURNING true
            """,
            job_id,
            token,
        )
        if done:
            await add_outbox(conn, job_id)
    return bool(done)


async def request_cancel(conn: db.Connection, workspace_id: UUID, job_id: UUID) -> JobRecord:
    """Inside the caller's transaction: note the cancel request and return the job, row-locked.
    Raises NotFound for another workspace's job."""
    row = await conn.fetchrow(
        f"""
        UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, now()),
               updated_at = now()
        WHERE id = $1 AND workspace_id = $2
        RETURNING {_COLUMNS}
        """,
        job_id,
        workspace_id,
    )
    if row is None:
        raise NotFound(f"no job with id {job_id}")
    return _record(row)


# --- reading --------------------------------------------------------------------------------


def _field_error(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{name}: {message}", details={"fields": [{"field": name, "message": message}]}
    )


def _cursor(job: JobRecord) -> str:
    raw = f"{_CURSOR_PREFIX}{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _cursor_position(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        when, job_id = raw.removeprefix(_CURSOR_PREFIX).split("|")
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError(cursor)
        at = datetime.fromisoformat(when)
        if at.tzinfo is None:
            raise ValueError(cursor)
        return at, UUID(job_id)
    except (ValueError, UnicodeDecodeError):
        raise _field_error("cursor", "not a cursor this server gave out") from None


class JobRepository:
    """Reads of a workspace's jobs (another workspace's job is not found)."""

    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> db.Pool:
        return self._pool

    async def get(self, workspace_id: UUID, job_id: Id) -> JobRecord:
        jid = parse_id(job_id, "job")
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM jobs WHERE id = $1 AND workspace_id = $2", jid, workspace_id
        )
        if row is None:
            raise NotFound(f"no job with id {job_id}")
        return _record(row)

    async def get_any(self, job_id: UUID) -> JobRecord | None:
        """For a worker, which learns only the id from the stream."""
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM jobs WHERE id = $1", job_id)
        return _record(row) if row is not None else None

    async def list(
        self,
        workspace_id: UUID,
        *,
        limit: int = 50,
        cursor: str | None = None,
        statuses: Sequence[str] = (),
        types: Sequence[str] = (),
    ) -> JobPage:
        """Newest first; ``cursor`` is the previous page's ``next_cursor``."""
        if isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
            raise _field_error("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
        conditions = ["workspace_id = $1"]
        args: builtins.list[Any] = [workspace_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if cursor is not None:
            at, after_id = _cursor_position(cursor)
            # Keyset paging: stable however many jobs are submitted meanwhile.
            conditions.append(f"(created_at, id) < ({arg(at)}, {arg(after_id)})")
        if statuses:
            conditions.append(f"status = ANY({arg(list(statuses))}::text[])")
        if types:
            conditions.append(f"type = ANY({arg(list(types))}::text[])")
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(conditions)} "
            f"ORDER BY created_at DESC, id DESC LIMIT {arg(limit + 1)}",
            *args,
        )
        jobs = [_record(row) for row in rows[:limit]]
        more = len(rows) > limit
        return JobPage(jobs, _cursor(jobs[-1]) if more else None)
