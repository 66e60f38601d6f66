"""The jobs tests share the server guards of ``tests/server`` (no error logs, no blocking
calls), the test job types (registered in this process on import) and a runner of job types
through a real ``JobContext``."""

from __future__ import annotations

import jobs.sample_job_types  # noqa: F401  (registers the test job types in this process)
from jobs.job_types_harness import runner  # noqa: F401  (fixture)
from server.conftest import blockbuster, http, no_server_errors  # noqa: F401  (fixtures)
