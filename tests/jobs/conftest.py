"""The jobs tests share the server guards of ``tests/server`` (no error logs, no blocking
calls) and the test job types (registered in this process on import)."""

from __future__ import annotations

import jobs.sample_job_types  # noqa: F401  (registers the test job types in this process)
from server.conftest import blockbuster, http, no_server_errors  # noqa: F401  (fixtures)
