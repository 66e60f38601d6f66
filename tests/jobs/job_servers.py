"""Servers for the jobs tests: on a database of their own (``own_database``), so that no other
server's relay or worker touches their jobs, with quick retries and short leases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fixtures_services import make_data_dir, own_database
from helpers import StartedServer, settings_for_test_server, start_test_server
from voicestream.engines.catalog import EngineRegistry
from voicestream.store.embedded import ServiceURLs

# Quick enough for tests, slow enough that a loaded machine does not lose leases.
FAST_JOBS: dict[str, Any] = {
    "jobs_retry_base_seconds": 0.4,
    "jobs_retry_max_seconds": 1.0,
    "jobs_poll_seconds": 0.1,
    "jobs_lease_seconds": 3.0,
    "jobs_republish_seconds": 5.0,
    "jobs_max_attempts": 3,
}


def job_settings(stream: str) -> dict[str, Any]:
    return {**FAST_JOBS, "jobs_stream": stream}


@asynccontextmanager
async def jobs_server(
    services: ServiceURLs, registry: EngineRegistry, data_dir: Path | None = None, **overrides: Any
) -> AsyncIterator[tuple[StartedServer, Any]]:
    """A server on a database of its own and a stream of its own; yields it and the database."""
    async with own_database(services) as own:
        settings = settings_for_test_server(
            services,
            data_dir or make_data_dir(),
            database_url=own.url,
            **{**job_settings(f"jobs-test-{uuid.uuid4().hex[:8]}"), **overrides},
        )
        async with start_test_server(settings, registry, key_workspace="jobs") as started:
            yield started, own
