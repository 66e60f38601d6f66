"""The ``retention`` job: a workspace's data that has outlived its retention policy goes, from
the database, object storage and the vectors.

Submitted every ``VOICESTREAM_RETENTION_INTERVAL_SECONDS`` per workspace by the schedules
(``jobs/schedules.py``), or at once through ``POST /v1/admin/retention/runs``; input ``{}``.
The policy is read when the job runs, so a changed policy applies from the next run.

Every step removes what is expired *now*, so a rerun (a retry, a worker that died) simply
finds less to do. Vectors of expired conversations go before their rows, so a run that stops
between the two leaves rows that the next run finds again, never vectors nobody can find.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from ...errors import NotFound
from ...store import retention
from ..context import JobContext
from ..registry import InputFiles, JobOutcome
from .workspace_services import WorkspaceServices, workspace_services

__all__ = ["RetentionInput", "RetentionJob"]

# Batches per class in one run; what is left waits for the next run.
_MAX_BATCHES: Final = 100
# The file classes: which files each one is, and the progress once it is done.
_FileClass = tuple[retention.RetentionClass, Literal["input", "output"], int]
_FILE_CLASSES: Final[tuple[_FileClass, ...]] = (
    ("job_outputs", "output", 75),
    ("uploads", "input", 100),
)


class RetentionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetentionJob:
    name = "retention"
    input_model: type[BaseModel] = RetentionInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        return 0

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        services = workspace_services(ctx)
        policy = await retention.get_policy(services.pool, ctx.workspace_id)
        now = datetime.now(UTC)
        removed: dict[str, int] = dict.fromkeys(retention.RETENTION_CLASSES, 0)
        cutoff = policy.cutoff("tts_history", now)
        if cutoff is not None:
            removed["tts_history"] = await _history(ctx, services, cutoff)
        await ctx.progress(20)
        cutoff = policy.cutoff("conversation_transcripts", now)
        if cutoff is not None:
            removed["conversation_transcripts"] = await _conversations(ctx, services, cutoff)
        await ctx.progress(50)
        # conversation_audio: the server keeps no conversation audio, so nothing expires.
        for kind, purpose, done in _FILE_CLASSES:
            cutoff = policy.cutoff(kind, now)
            if cutoff is not None:
                removed[kind] = await _files(ctx, services, purpose, cutoff)
            await ctx.progress(done)
        result: dict[str, Any] = {"policy": asdict(policy), "removed": removed}
        return JobOutcome(result=result)


async def _history(ctx: JobContext, services: WorkspaceServices, cutoff: datetime) -> int:
    total = 0
    for _ in range(_MAX_BATCHES):
        count = await retention.delete_history_before(services.pool, ctx.workspace_id, cutoff)
        total += count
        if count == 0:
            break
        await ctx.checkpoint()
    return total


async def _conversations(ctx: JobContext, services: WorkspaceServices, cutoff: datetime) -> int:
    total = 0
    for _ in range(_MAX_BATCHES):
        ids = await retention.expired_conversations(services.pool, ctx.workspace_id, cutoff)
        if not ids:
            break
        await services.vectors.forget_conversations(ctx.workspace_id, ids)
        total += await retention.delete_conversations(services.pool, ctx.workspace_id, ids)
        await ctx.checkpoint()
    return total


async def _files(
    ctx: JobContext,
    services: WorkspaceServices,
    purpose: Literal["input", "output"],
    cutoff: datetime,
) -> int:
    total = 0
    for _ in range(_MAX_BATCHES):
        expired = await retention.expired_files(services.pool, ctx.workspace_id, purpose, cutoff)
        if not expired:
            break
        for found in expired:
            try:
                await services.files.delete(ctx.workspace_id, found.id)
            except NotFound:
                continue  # deleted meanwhile, by its owner or an earlier attempt
            total += 1
        await ctx.checkpoint()
    return total
