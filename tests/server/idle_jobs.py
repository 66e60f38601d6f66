"""A job stored directly, queued without an outbox row: no worker ever runs it (its type is
not one), so what the test points at it stays in that job."""

from __future__ import annotations

import uuid

from voicestream.store import db
from voicestream.store import jobs as job_store


async def insert_idle_job(
    conn: db.Connection, workspace_id: uuid.UUID, job_type: str
) -> job_store.JobRecord:
    return await job_store.insert_job(
        conn,
        job_store.NewJob(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            type=job_type,
            input={},
            max_attempts=1,
            idempotency_key=None,
            request_hash=None,
            created_by_user=None,
            created_by_key=None,
        ),
    )
