"""The jobs tests share the server guards of ``tests/server`` (no error logs, no blocking
calls), the test job types (registered in this process on import) and a runner of job types
through a real ``JobContext``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import jobs.sample_job_types  # noqa: F401  (registers the test job types in this process)
from jobs.job_types_harness import JobTypeRunner, job_type_runner
from server.conftest import blockbuster, http, no_server_errors  # noqa: F401  (fixtures)
from voicestream.engines.catalog import EngineRegistry
from voicestream.store import db


@pytest.fixture
async def runner(
    db_pool: db.Pool,
    registry: EngineRegistry,
    tmp_path: Path,
) -> AsyncIterator[JobTypeRunner]:
    async with job_type_runner(db_pool, registry, tmp_path) as started:
        yield started
