"""``/v1/admin/…`` compliance and data lifecycle: retention policies, data export and deletion
on request, and the HIPAA mode. All of them act on the caller's own workspace.

- ``GET/PUT /retention``: days kept per class (``null`` keeps it); ``POST /retention/runs``
  applies the policy now (the ``retention`` job, which also runs on a schedule).
- ``POST /data-exports`` starts a ``data_export`` job (one zip of everything the workspace owns,
  with a manifest); ``GET /data-exports/{export_id}`` polls it and, once done, signs a fresh
  download URL for the archive.
- ``POST /data-deletions`` (owner only) deletes everything, once ``confirm`` repeats the
  workspace's name. It answers a ``receipt``: the caller's credentials die with the workspace,
  so ``GET /data-deletions/{deletion_id}?receipt=…`` (no credential) reads the tombstone, and
  whether the check afterwards found nothing left (``verified``).
- ``GET/PUT /compliance``: the HIPAA mode and the settings it makes stricter
  (``identity/compliance.py`` enforces them).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from ..errors import NotFound, ValidationFailed
from ..identity.audit_trail import audit, client_ip
from ..identity.compliance import COMPLIANCE, address_listed, requester_of
from ..identity.request_principal import principal_of
from ..protocols.json_messages import validate_model
from ..store import retention
from ..store import workspace_deletions as deletions
from ..store.compliance_settings import ComplianceSettings, get_settings, set_settings
from ..store.jobs import JobRecord, JobStatus
from .bodies import read_json_object, read_model
from .files import FILES
from .jobs import JOBS, JobError, JobModel
from .resources import POOL

__all__ = [
    "ComplianceBody",
    "ComplianceModel",
    "DataDeletionBody",
    "DataDeletionCreated",
    "DataDeletionModel",
    "DataExportModel",
    "RetentionPolicyModel",
    "compliance_admin_routes",
]

Days = Annotated[int, Field(ge=1, le=retention.MAX_DAYS)]
_MAX_NETWORKS: Final = 100


class RetentionPolicyModel(BaseModel):
    """Days each class is kept; ``null`` (or left out) keeps it for good."""

    model_config = ConfigDict(extra="forbid")
    conversation_transcripts: Days | None = None
    conversation_audio: Days | None = None
    tts_history: Days | None = None
    job_outputs: Days | None = None
    uploads: Days | None = None


class EmptyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArchiveModel(BaseModel):
    file_id: UUID
    url: str | None  # signed, expiring; GET again for a fresh one
    bytes: int | None


class DataExportModel(BaseModel):
    id: UUID
    status: JobStatus
    progress: int
    created_at: datetime
    finished_at: datetime | None
    archive: ArchiveModel | None  # once completed
    counts: dict[str, int] | None  # rows per archive entry, once completed
    error: JobError | None


class DataDeletionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The workspace's name, repeated: nothing is deleted by a mistyped id or a stray retry.
    confirm: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class DataDeletionModel(BaseModel):
    id: UUID
    workspace_id: UUID
    workspace_name: str
    requested_by: str
    status: deletions.DeletionStatus
    counts: dict[str, Any]  # rows per table, files and vector points, as found before
    remaining: dict[str, int] | None  # what the check afterwards found left
    verified: bool  # the check found no row, file or vector point left
    error: str | None
    requested_at: datetime
    deleted_at: datetime | None
    verified_at: datetime | None

    @classmethod
    def of(cls, record: deletions.DeletionRecord) -> DataDeletionModel:
        return cls(
            id=record.id,
            workspace_id=record.deleted_workspace_id,
            workspace_name=record.workspace_name,
            requested_by=record.requested_by,
            status=record.status,
            counts=record.counts,
            remaining=record.remaining,
            verified=record.verified,
            error=record.error,
            requested_at=record.requested_at,
            deleted_at=record.deleted_at,
            verified_at=record.verified_at,
        )


class DataDeletionCreated(DataDeletionModel):
    # Keep it: the only way to read this record once the workspace (and every credential of
    # it) is gone. Shown once.
    receipt: str
    job_id: UUID


class DeletionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    receipt: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ComplianceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hipaa: StrictBool
    # Under HIPAA, TTS history and conversation audio are kept only when these are true.
    keep_tts_history: StrictBool = False
    keep_conversation_audio: StrictBool = False
    # CIDRs ("203.0.113.0/24", "2001:db8::/32", a single address); empty: any address.
    ip_allow_list: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=_MAX_NETWORKS
    )
    # Lifetime of access tokens minted for this workspace under HIPAA.
    access_token_minutes: int = Field(15, ge=1, le=60)


class ComplianceModel(BaseModel):
    hipaa: bool
    keep_tts_history: bool
    keep_conversation_audio: bool
    ip_allow_list: list[str]
    access_token_minutes: int
    # What is in force now (the HIPAA mode's stricter defaults, or none without it).
    mfa_required: bool
    personal_data_reads_audited: bool
    tts_history_kept: bool
    conversation_audio_kept: bool

    @classmethod
    def of(cls, settings: ComplianceSettings) -> ComplianceModel:
        return cls(
            hipaa=settings.hipaa,
            keep_tts_history=settings.keep_tts_history,
            keep_conversation_audio=settings.keep_conversation_audio,
            ip_allow_list=[str(network) for network in settings.ip_allow_list],
            access_token_minutes=settings.access_token_minutes,
            mfa_required=settings.hipaa,
            personal_data_reads_audited=settings.hipaa,
            tts_history_kept=not settings.hipaa or settings.keep_tts_history,
            conversation_audio_kept=not settings.hipaa or settings.keep_conversation_audio,
        )


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


async def _optional_empty_body(request: web.Request) -> None:
    """A POST that takes no input: no body, or ``{}``; anything else is a 422."""
    if request.can_read_body:
        validate_model(EmptyBody, await read_json_object(request))


# --- retention -------------------------------------------------------------------------------


async def get_retention(request: web.Request) -> web.Response:
    principal = principal_of(request)
    policy = await retention.get_policy(request.config_dict[POOL], principal.workspace_id)
    return _json(RetentionPolicyModel(**policy_fields(policy)))


def policy_fields(policy: retention.RetentionPolicy) -> dict[str, int | None]:
    return {kind: policy.days(kind) for kind in retention.RETENTION_CLASSES}


async def put_retention(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await read_model(request, RetentionPolicyModel)
    policy = retention.RetentionPolicy(**body.model_dump())
    await retention.set_policy(request.config_dict[POOL], principal.workspace_id, policy)
    # After the change: it is in force whatever the audit log's state.
    await audit(request, "retention.updated", "workspace", principal.workspace_id, details={
        kind: days for kind, days in policy_fields(policy).items()
    })  # fmt: skip
    return _json(body)


async def post_retention_run(request: web.Request) -> web.Response:
    principal = principal_of(request)
    await _optional_empty_body(request)
    submission = await request.config_dict[JOBS].submit(
        principal.workspace_id,
        "retention",
        {},
        user_id=principal.user_id,
        key_id=principal.key_id,
    )
    headers = {"Location": f"/v1/jobs/{submission.job.id}"}
    return web.json_response(
        text=JobModel.of(submission.job).model_dump_json(), status=202, headers=headers
    )


# --- data export -----------------------------------------------------------------------------


async def _export_model(request: web.Request, job: JobRecord) -> DataExportModel:
    archive = None
    counts = None
    if job.status == "completed" and job.result:
        stored = next(
            (f for f in job.result.get("files", []) if isinstance(f, dict) and f.get("id")), None
        )
        if stored is not None:
            files = request.config_dict[FILES]
            try:
                record = await files.get(job.workspace_id, stored["id"])
            except NotFound:
                record = None  # removed since (by a retention policy, or by hand)
            if record is not None:
                archive = ArchiveModel(
                    file_id=record.id, url=await files.download_url(record), bytes=record.bytes
                )
        counts = job.result.get("counts")
    return DataExportModel(
        id=job.id,
        status=job.status,
        progress=job.progress,
        created_at=job.created_at,
        finished_at=job.finished_at,
        archive=archive,
        counts=counts,
        error=JobError.model_validate(job.error) if job.error else None,
    )


async def post_data_export(request: web.Request) -> web.Response:
    principal = principal_of(request)
    await _optional_empty_body(request)
    submission = await request.config_dict[JOBS].submit(
        principal.workspace_id,
        "data_export",
        {},
        user_id=principal.user_id,
        key_id=principal.key_id,
    )
    await audit(request, "data_export.requested", "job", submission.job.id)
    model = await _export_model(request, submission.job)
    headers = {"Location": f"/v1/admin/data-exports/{submission.job.id}"}
    return web.json_response(text=model.model_dump_json(), status=202, headers=headers)


async def get_data_export(request: web.Request) -> web.Response:
    principal = principal_of(request)
    export_id = request.match_info["export_id"]
    job = await request.config_dict[JOBS].get(principal.workspace_id, export_id)
    if job.type != "data_export":
        raise NotFound(f"no data export with id {export_id!r}")
    return _json(await _export_model(request, job))


# --- data deletion ---------------------------------------------------------------------------


async def post_data_deletion(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await read_model(request, DataDeletionBody)
    if body.confirm != principal.workspace_name:
        raise ValidationFailed(
            "confirm must repeat the workspace's name exactly",
            details={"fields": [{"field": "confirm", "message": "not the workspace's name"}]},
        )
    receipt = deletions.new_receipt()
    requested_by = requester_of(principal)

    async def record(conn: Any, job: JobRecord) -> None:
        await deletions.insert_deletion(
            conn, job.id, principal.workspace_id, principal.workspace_name, requested_by, receipt
        )

    # Before the job can run: the request is on record even if the deletion later fails.
    await audit(request, "data_deletion.requested", "workspace", principal.workspace_id)
    submission = await request.config_dict[JOBS].submit(
        principal.workspace_id,
        "data_deletion",
        {},
        user_id=principal.user_id,
        key_id=principal.key_id,
        with_job=record,
    )
    found = await deletions.find_deletion(request.config_dict[POOL], submission.job.id)
    assert found is not None  # written in the job's own transaction
    created = DataDeletionCreated(
        **DataDeletionModel.of(found).model_dump(), receipt=receipt, job_id=submission.job.id
    )
    headers = {"Location": f"/v1/admin/data-deletions/{found.id}"}
    return web.json_response(text=created.model_dump_json(), status=202, headers=headers)


async def get_data_deletion(request: web.Request) -> web.Response:
    raw_id = request.match_info["deletion_id"]
    missing = NotFound(f"no data deletion with id {raw_id!r} and this receipt")
    query = validate_model(DeletionQuery, dict(request.query), "the query")
    try:
        deletion_id = UUID(raw_id)
    except ValueError:
        raise missing from None
    pool = request.config_dict[POOL]
    found = await deletions.read_deletion(pool, deletion_id, query.receipt)
    if found is None:
        raise missing
    if found.status == "pending":
        found = await _settle_failed(request, found)
    return _json(DataDeletionModel.of(found))


async def _settle_failed(
    request: web.Request, found: deletions.DeletionRecord
) -> deletions.DeletionRecord:
    """A pending request whose job has ended without deleting: the job's error, on record
    (which also lets the owner ask again)."""
    try:
        job = await request.config_dict[JOBS].get(found.deleted_workspace_id, found.id)
    except NotFound:
        return found  # deleted meanwhile: the job's row went with the workspace
    if job.status not in ("failed", "cancelled"):
        return found
    message = (job.error or {}).get("message") or f"the deletion job was {job.status}"
    pool = request.config_dict[POOL]
    await deletions.mark_failed(pool, found.id, str(message))
    return await deletions.find_deletion(pool, found.id) or found


# --- the HIPAA mode --------------------------------------------------------------------------


async def get_compliance(request: web.Request) -> web.Response:
    principal = principal_of(request)
    settings = await get_settings(request.config_dict[POOL], principal.workspace_id)
    return _json(ComplianceModel.of(settings))


def _networks(body: ComplianceBody) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    problems = []
    for index, text in enumerate(body.ip_allow_list):
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            problems.append({"field": f"ip_allow_list.{index}", "message": "not a CIDR or address"})
    if problems:
        raise ValidationFailed("ip_allow_list holds what is not a network", details={
            "fields": problems
        })  # fmt: skip
    return tuple(dict.fromkeys(networks))


async def put_compliance(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await read_model(request, ComplianceBody)
    networks = _networks(body)
    rules = request.config_dict[COMPLIANCE]
    address = client_ip(request, trust_forwarded_headers=rules.trust_forwarded_headers)
    if networks and not address_listed(address, networks):
        # Saving it would shut out the very caller, and with it every way to undo it.
        raise ValidationFailed(
            f"ip_allow_list does not include your own address ({address}); add it first",
            details={"fields": [{"field": "ip_allow_list", "message": "excludes the caller"}]},
        )
    settings = ComplianceSettings(
        hipaa=body.hipaa,
        keep_tts_history=body.keep_tts_history,
        keep_conversation_audio=body.keep_conversation_audio,
        ip_allow_list=networks,
        access_token_minutes=body.access_token_minutes,
    )
    await set_settings(request.config_dict[POOL], principal.workspace_id, settings)
    rules.forget(principal.workspace_id)
    await audit(request, "compliance.updated", "workspace", principal.workspace_id, details={
        "hipaa": settings.hipaa,
        "keep_tts_history": settings.keep_tts_history,
        "keep_conversation_audio": settings.keep_conversation_audio,
        "ip_allow_list": [str(n) for n in networks],
        "access_token_minutes": settings.access_token_minutes,
    })  # fmt: skip
    return _json(ComplianceModel.of(settings))


def compliance_admin_routes() -> list[web.RouteDef]:
    """Paths relative to ``/v1/admin`` (rest/admin.py)."""
    return [
        web.get("/retention", get_retention, allow_head=False),
        web.put("/retention", put_retention),
        web.post("/retention/runs", post_retention_run),
        web.post("/data-exports", post_data_export),
        web.get("/data-exports/{export_id}", get_data_export, allow_head=False),
        web.post("/data-deletions", post_data_deletion),
        web.get("/data-deletions/{deletion_id}", get_data_deletion, allow_head=False),
        web.get("/compliance", get_compliance, allow_head=False),
        web.put("/compliance", put_compliance),
    ]
