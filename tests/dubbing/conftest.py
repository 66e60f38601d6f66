"""The dubbing tests run the pipeline on the real engines through a real ``JobContext`` (as
tests/jobs do), with the server guards: no error logs, no blocking calls on the loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobs.job_types_harness import JobTypeRunner, job_type_runner
from server.conftest import blockbuster, no_server_errors  # noqa: F401  (fixtures)
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
