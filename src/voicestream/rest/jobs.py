"""``/v1/jobs``: background jobs of the workspace — submit, read, list, cancel.

``POST /v1/jobs`` answers 202 with the job; with an ``Idempotency-Key`` header the same key
and body give back the same job (``Idempotent-Replayed: true``), the same key with another
body is a 422, and while the first request with the key is still in flight a 409. Listing is
newest first, paged by an opaque ``cursor`` and filtered by ``status`` and ``type`` (each a
comma-separated list). Another workspace's job, like a malformed id, is a 404.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ..errors import ValidationFailed
from ..identity.request_principal import principal_of
from ..jobs.lifecycle import JobService
from ..jobs.types.workspace_services import ADMIN_JOB_TYPES
from ..store.jobs import JOB_STATUSES, MAX_PAGE_SIZE, JobRecord, JobStatus
from .bodies import read_model, read_query
from .files import FILES

__all__ = [
    "IDEMPOTENCY_HEADER",
    "JOBS",
    "JOBS_PREFIX",
    "JobError",
    "JobListQuery",
    "JobModel",
    "JobPageModel",
    "JobSubmitBody",
    "jobs_app",
]

JOBS: web.AppKey[JobService] = web.AppKey("voicestream_jobs", JobService)
JOBS_PREFIX: Final = "/v1/jobs"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
_TYPE = r"^[a-z][a-z0-9_.-]{0,63}$"


class JobSubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Annotated[str, StringConstraints(pattern=_TYPE)]
    input: dict[str, Any] = Field(default_factory=dict)


class JobError(BaseModel):
    code: str
    message: str


class JobModel(BaseModel):
    id: UUID
    type: str
    status: JobStatus
    progress: int  # 0–100
    input: dict[str, Any]
    result: dict[str, Any] | None  # when completed; result.files lists the outputs
    error: JobError | None  # the last attempt's error (a dead job's reason)
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    next_attempt_at: datetime | None  # a retry's time, while queued after a failure

    @classmethod
    def of(cls, job: JobRecord) -> JobModel:
        error = JobError.model_validate(job.error) if job.error else None
        retrying = job.status == "queued" and job.attempts > 0
        return cls(
            id=job.id,
            type=job.type,
            status=job.status,
            progress=job.progress,
            input=job.input,
            result=job.result,
            error=error,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            cancel_requested_at=job.cancel_requested_at,
            next_attempt_at=job.run_after if retrying else None,
        )


class JobPageModel(BaseModel):
    data: list[JobModel]
    next_cursor: str | None  # None on the last page


class JobListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = None
    status: Annotated[str, StringConstraints(max_length=200)] | None = None  # a,b
    type: Annotated[str, StringConstraints(max_length=500)] | None = None  # a,b

    @field_validator("status")
    @classmethod
    def _statuses(cls, v: str | None) -> str | None:
        for name in _split(v):
            if name not in JOB_STATUSES:
                raise ValueError(f"{name!r} is not one of {', '.join(JOB_STATUSES)}")
        return v


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _json(
    body: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(text=body.model_dump_json(), status=status, headers=headers)


def _idempotency_key(request: web.Request) -> str | None:
    values = request.headers.getall(IDEMPOTENCY_HEADER, [])
    if not values:
        return None
    if len(values) > 1 or not _KEY.match(values[0]):
        raise ValidationFailed(
            f"{IDEMPOTENCY_HEADER} must be one value of 1 to 255 printable ASCII characters",
            details={"fields": [{"field": IDEMPOTENCY_HEADER, "message": "malformed"}]},
        )
    return values[0]


async def submit_job(request: web.Request) -> web.Response:
    principal = principal_of(request)
    key = _idempotency_key(request)
    body = await read_model(request, JobSubmitBody)
    if body.type in ADMIN_JOB_TYPES:
        # They act on the whole workspace: an editor's job must not export its admins' data.
        raise ValidationFailed(
            f"a {body.type} job is requested through {ADMIN_JOB_TYPES[body.type]}",
            details={"fields": [{"field": "type", "message": "requested elsewhere"}]},
        )
    submission = await request.config_dict[JOBS].submit(
        principal.workspace_id,
        body.type,
        body.input,
        idempotency_key=key,
        user_id=principal.user_id,
        key_id=principal.key_id,
        files=request.config_dict[FILES].for_submission(principal.workspace_id),
    )
    headers = {"Location": f"{JOBS_PREFIX}/{submission.job.id}"}
    if not submission.created:
        headers["Idempotent-Replayed"] = "true"
    return _json(JobModel.of(submission.job), 202, headers)


async def get_job(request: web.Request) -> web.Response:
    principal = principal_of(request)
    job = await request.config_dict[JOBS].get(principal.workspace_id, request.match_info["job_id"])
    (model,) = await _with_fresh_urls(request, principal.workspace_id, [JobModel.of(job)])
    return _json(model)


def _output_ids(model: JobModel) -> list[UUID]:
    files = (model.result or {}).get("files")
    ids: list[UUID] = []
    for entry in files if isinstance(files, list) else []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            ids.append(UUID(str(entry["id"])))
    return ids


async def _with_fresh_urls(
    request: web.Request, workspace_id: UUID, models: list[JobModel]
) -> list[JobModel]:
    """``models`` with their ``result.files[].url`` signed afresh from the files' ids (one
    query for all): the URLs stored with a job expire (``VOICESTREAM_FILE_URL_SECONDS``), and
    a job is read long after. A file deleted since has ``url`` null."""
    ids = [file_id for model in models for file_id in _output_ids(model)]
    if not ids:
        return models
    urls = await request.config_dict[FILES].fresh_urls(workspace_id, ids)
    for model in models:
        if not _output_ids(model):
            continue
        assert model.result is not None
        fresh = []
        for entry in model.result["files"]:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                entry = {**entry, "url": urls.get(UUID(str(entry["id"])))}
            fresh.append(entry)
        model.result = {**model.result, "files": fresh}
    return models


async def list_jobs(request: web.Request) -> web.Response:
    principal = principal_of(request)
    query = read_query(request, JobListQuery)
    page = await request.config_dict[JOBS].list(
        principal.workspace_id,
        limit=query.limit,
        cursor=query.cursor,
        statuses=_split(query.status),
        types=_split(query.type),
    )
    models = [JobModel.of(j) for j in page.jobs]
    models = await _with_fresh_urls(request, principal.workspace_id, models)
    return _json(JobPageModel(data=models, next_cursor=page.next_cursor))


async def cancel_job(request: web.Request) -> web.Response:
    principal = principal_of(request)
    job = await request.config_dict[JOBS].cancel(
        principal.workspace_id, request.match_info["job_id"]
    )
    return _json(JobModel.of(job), 202)


def jobs_app() -> web.Application:
    """The sub-app to mount at ``JOBS_PREFIX`` ("" is the prefix itself)."""
    app = web.Application()
    app.add_routes(
        [
            web.post("", submit_job),
            web.get("", list_jobs, allow_head=False),
            web.get("/{job_id}", get_job, allow_head=False),
            web.post("/{job_id}/cancel", cancel_job),
        ]
    )
    return app
