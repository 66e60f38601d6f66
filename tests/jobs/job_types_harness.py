"""Running a built-in job type directly, as a worker does, on the real pieces: a ``JobContext``
with ``StoredJobFiles`` over a ``FileStore`` in the session's PostgreSQL and a local object
store, the session's engines, and executors of the test's own.

Only the worker's lease bookkeeping is left out: progress reports are recorded in a list (and
can ask for a cancel), so a test sees every report the job type makes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import voicestream.jobs.types  # noqa: F401  (registers the built-in job types, as workers do)
from fixtures_services import unique_name
from voicestream.config import Settings, load_settings
from voicestream.engines.catalog import EngineRegistry
from voicestream.engines.executor import InferenceExecutor
from voicestream.jobs.context import JobContext, JobEngines
from voicestream.jobs.registry import JobOutcome, job_type
from voicestream.store import db
from voicestream.store.files import FileStore, StoredJobFiles
from voicestream.store.jobs import NewJob, insert_job
from voicestream.store.object_storage import LocalStorage, UrlSigner
from voicestream.store.workspaces import ensure_workspace

__all__ = ["JobTypeRunner", "job_type_runner", "runner"]


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@dataclass
class JobTypeRunner:
    pool: db.Pool
    files: FileStore
    engines: JobEngines
    settings: Settings
    workspace_id: uuid.UUID
    progress: list[int | None] = field(default_factory=list)
    cancel_after: int | None = None  # ask for a cancel once this many reports were made

    async def upload(self, data: bytes, name: str, content_type: str) -> uuid.UUID:
        record = await self.files.upload(
            self.workspace_id, name=name, content_type=content_type, chunks=_chunks(data)
        )
        return record.id

    async def read_output(self, result_file: dict[str, Any]) -> bytes:
        _, chunks = await self.files.open(self.workspace_id, result_file["id"])
        return b"".join([chunk async for chunk in chunks])

    async def run(self, type_name: str, job_input: dict[str, Any]) -> JobOutcome:
        kind = job_type(type_name)
        parsed = kind.input_model.model_validate(job_input)
        job_id = uuid.uuid4()
        async with self.pool.acquire() as conn:
            await insert_job(
                conn,
                NewJob(
                    id=job_id,
                    workspace_id=self.workspace_id,
                    type=type_name,
                    input=json.loads(parsed.model_dump_json()),
                    max_attempts=1,
                    idempotency_key=None,
                    request_hash=None,
                    created_by_user=None,
                    created_by_key=None,
                ),
            )

        async def report(percent: int | None) -> bool:
            self.progress.append(percent)
            return self.cancel_after is not None and len(self.progress) > self.cancel_after

        ctx = JobContext(
            job_id=job_id,
            workspace_id=self.workspace_id,
            attempt=1,
            files=StoredJobFiles(self.files, self.workspace_id, job_id),
            engines=self.engines,
            settings=self.settings,
            _report=report,
        )
        return await kind.run(ctx, parsed)


@asynccontextmanager
async def job_type_runner(
    pool: db.Pool, registry: EngineRegistry, data_dir: Path
) -> AsyncIterator[JobTypeRunner]:
    settings = load_settings({}, data_dir=data_dir)
    storage = LocalStorage(data_dir / "files", UrlSigner("job-types-test-secret"))
    files = FileStore(pool, storage, max_bytes=256 * 1024 * 1024, url_seconds=600)
    async with pool.acquire() as conn:
        workspace_id = await ensure_workspace(conn, unique_name("jobtypes"))
    tts = {name: InferenceExecutor(f"tts-{name}", 1) for name in registry.tts_engine_names()}
    stt = InferenceExecutor("stt", 2)
    media = InferenceExecutor("media", 1)
    engines = JobEngines(registry, tts, stt, media)
    try:
        yield JobTypeRunner(pool, files, engines, settings, workspace_id)
    finally:
        for executor in (*tts.values(), stt, media):
            await asyncio.to_thread(executor.shutdown)


@pytest.fixture
async def runner(
    db_pool: db.Pool,
    registry: EngineRegistry,
    tmp_path: Path,
) -> AsyncIterator[JobTypeRunner]:
    """A fixture for the conftests that run job types (they import it)."""
    async with job_type_runner(db_pool, registry, tmp_path) as started:
        yield started
