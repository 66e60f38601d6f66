"""The dubbing tests run the pipeline on the real engines through a real ``JobContext`` (as
tests/jobs do), with the server guards: no error logs, no blocking calls on the loop."""

from __future__ import annotations

from jobs.job_types_harness import runner  # noqa: F401  (fixture)
from server.conftest import blockbuster, no_server_errors  # noqa: F401  (fixtures)
