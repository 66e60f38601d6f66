"""The ``data_deletion`` job: everything a workspace owns goes, and a tombstone stays.

Requested through ``POST /v1/admin/data-deletions`` (owner only, naming the workspace to
confirm); input ``{}``; the request's record (``store/workspace_deletions.py``) has the job's
id. The run:

1. counts what there is (rows per table, stored files, vector points) for the tombstone;
2. appends the tombstone to the audit log (``workspace.data_deleted``: who asked, when, the
   counts), which keeps no foreign key to the workspace and so survives it;
3. removes the stored files' bytes from object storage and the vector points;
4. deletes the workspace row: every table holding its data references it with ON DELETE
   CASCADE, so its rows go with it, API keys, memberships and this job's own row included
   (its keys and members' sessions stop working at once);
5. checks that no row, file or vector point of it is left, and records ``verified``.

Steps 1–3 can run again after a crash: once the record says the counts are taken they are
not taken again (an attempt that dies between the audit entry and that mark leaves a second
entry, never none), and removing what is already gone is no error. Once the row is
deleted the job's own row is gone, so nothing is reported after step 4 (the worker then finds
the job gone and drops the outcome quietly); the check runs shielded from the lease's end.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict

from ...errors import NotFound
from ...store.audit import Actor, AuditLog
from ...store.workspace_data import count_owned_rows, delete_workspace_rows, file_keys
from ...store.workspace_deletions import (
    DeletionRecord,
    find_deletion,
    mark_deleted,
    mark_verified,
)
from ..context import JobContext
from ..registry import InputFiles, JobOutcome
from .workspace_services import WorkspaceServices, workspace_services

__all__ = ["DataDeletionInput", "DataDeletionJob", "remaining_data"]


class DataDeletionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataDeletionJob:
    name = "data_deletion"
    input_model: type[BaseModel] = DataDeletionInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        return 0

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        services = workspace_services(ctx)
        record = await find_deletion(services.pool, ctx.job_id)
        if record is None:
            raise NotFound(f"job {ctx.job_id} is no deletion request")
        keys = await file_keys(services.pool, ctx.workspace_id)
        if record.status != "deleted":
            counts = await _counts(ctx, services, keys)
            await _tombstone(services, record, counts)
            await mark_deleted(services.pool, record.id, counts)
        await ctx.progress(30)
        for key in keys:
            await services.files.storage.delete(key)
        await services.vectors.delete_workspace(ctx.workspace_id)
        await ctx.progress(60)
        # The last report: past this point the job's row (and so its lease) is gone.
        await delete_workspace_rows(services.pool, ctx.workspace_id)
        remaining = await asyncio.shield(_verify(ctx, services, record, keys))
        return JobOutcome(result={"remaining": remaining})


async def _counts(ctx: JobContext, services: WorkspaceServices, keys: list[str]) -> dict[str, Any]:
    rows = await count_owned_rows(services.pool, ctx.workspace_id)
    vectors = await services.vectors.count_workspace(ctx.workspace_id)
    return {"rows": rows, "files": len(keys), "vectors": vectors}


async def _tombstone(
    services: WorkspaceServices, record: DeletionRecord, counts: dict[str, Any]
) -> None:
    rows = counts["rows"]
    await AuditLog(services.pool).record(
        "workspace.data_deleted",
        actor=Actor(display=record.requested_by),
        workspace_id=record.deleted_workspace_id,
        target_type="workspace",
        target_id=record.deleted_workspace_id,
        details={
            "deletion_id": str(record.id),
            "workspace_name": record.workspace_name,
            "requested_at": record.requested_at.isoformat(),
            "rows": sum(rows.values()),
            "files": counts["files"],
            "vectors": sum(counts["vectors"].values()),
        },
    )


async def remaining_data(
    services: WorkspaceServices, workspace_id: Any, keys: list[str]
) -> dict[str, int]:
    """What is still there of a deleted workspace: rows, stored objects, vector points."""
    rows = await count_owned_rows(services.pool, workspace_id)
    objects = 0
    for key in keys:
        if await services.files.storage.size(key) is not None:
            objects += 1
    vectors = await services.vectors.count_workspace(workspace_id)
    return {"rows": sum(rows.values()), "files": objects, "vectors": sum(vectors.values())}


async def _verify(
    ctx: JobContext, services: WorkspaceServices, record: DeletionRecord, keys: list[str]
) -> dict[str, int]:
    remaining = await remaining_data(services, ctx.workspace_id, keys)
    await mark_verified(services.pool, record.id, remaining)
    return remaining
