"""What the data-lifecycle jobs (retention, data export, data deletion) need beyond a job's
usual context: the database, the whole file store, and the vectors. They act on a whole
workspace, so each checks up front that the process lends them all, and fails with a clear
error otherwise rather than leaving part of a workspace's data behind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ...errors import EngineUnavailable
from ...store import db
from ...store.files import FileStore
from ...store.vectors import VectorStore
from ..context import JobContext

__all__ = ["ADMIN_JOB_TYPES", "WorkspaceServices", "workspace_services"]

# Job types that act on a whole workspace, and the route that requests each: never through
# ``POST /v1/jobs``, where any editor could submit them.
ADMIN_JOB_TYPES: Final[Mapping[str, str]] = {
    "retention": "POST /v1/admin/retention/runs",
    "data_export": "POST /v1/admin/data-exports",
    "data_deletion": "POST /v1/admin/data-deletions",
}


@dataclass(frozen=True, slots=True)
class WorkspaceServices:
    pool: db.Pool
    files: FileStore
    vectors: VectorStore


def workspace_services(ctx: JobContext) -> WorkspaceServices:
    if ctx.pool is None:
        raise EngineUnavailable("this job needs the database, and this process lends it none")
    vectors = ctx.engines.vectors
    if vectors is None:
        # Permanent here: a worker without the vectors will not gain them on a retry.
        raise EngineUnavailable(
            "this job needs the vector store; run it on the server process (local Qdrant) "
            "or point every worker at a Qdrant server (QDRANT_URL)"
        )
    return WorkspaceServices(ctx.pool, ctx.files.store, vectors)
