"""The OpenAPI entries of the compliance and data-lifecycle admin routes (rest/compliance.py),
merged into ``OPERATIONS``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..rest.compliance import (
    ComplianceBody,
    ComplianceModel,
    DataDeletionBody,
    DataDeletionCreated,
    DataDeletionModel,
    DataExportModel,
    DeletionQuery,
    RetentionPolicyModel,
)
from ..rest.jobs import JobModel
from ..rest.openapi import Op, ok

__all__ = ["COMPLIANCE_OPERATIONS"]

_TAG: Final = "compliance"

COMPLIANCE_OPERATIONS: Final[Mapping[tuple[str, str], Op]] = {
    ("GET", "/v1/admin/retention"): Op(
        "The workspace's retention policy: days kept per class (null keeps it)",
        _TAG,
        responses=ok(RetentionPolicyModel),
    ),
    ("PUT", "/v1/admin/retention"): Op(
        "Set the retention policy; the next retention run removes what is older",
        _TAG,
        body=RetentionPolicyModel,
        responses=ok(RetentionPolicyModel),
    ),
    ("POST", "/v1/admin/retention/runs"): Op(
        "Apply the retention policy now (a `retention` job; it also runs on a schedule)",
        _TAG,
        description="No body, or `{}`.",
        responses=ok(JobModel, 202, "The retention job."),
    ),
    ("POST", "/v1/admin/data-exports"): Op(
        "Export everything the workspace owns: one zip archive with a manifest (a job)",
        _TAG,
        description="No body, or `{}`. Hashes and sealed secrets are redacted in the archive.",
        responses=ok(DataExportModel, 202, "The export, being made."),
    ),
    ("GET", "/v1/admin/data-exports/{export_id}"): Op(
        "A data export: its state and, once done, a fresh signed URL of the archive",
        _TAG,
        responses=ok(DataExportModel),
    ),
    ("POST", "/v1/admin/data-deletions"): Op(
        "Delete everything the workspace owns (owner only; `confirm` repeats its name)",
        _TAG,
        description=(
            "Rows, stored files and vectors; the workspace's keys and sessions stop working. "
            "Keep the `receipt`: it reads the tombstone once every credential is gone."
        ),
        body=DataDeletionBody,
        responses=ok(DataDeletionCreated, 202, "The deletion request, with its receipt."),
    ),
    ("GET", "/v1/admin/data-deletions/{deletion_id}"): Op(
        "A deletion's tombstone: what was removed, and whether nothing is left (`verified`)",
        _TAG,
        auth="public",
        description="No credential: the `receipt` from the request is the proof.",
        query=DeletionQuery,
        responses=ok(DataDeletionModel),
    ),
    ("GET", "/v1/admin/compliance"): Op(
        "The HIPAA mode and the settings it makes stricter", _TAG, responses=ok(ComplianceModel)
    ),
    ("PUT", "/v1/admin/compliance"): Op(
        "Turn the HIPAA mode on or off; set the IP allow-list and token lifetime",
        _TAG,
        description=(
            "With HIPAA on: members need a second factor (403 `mfa_required`), access tokens "
            "are accepted for `access_token_minutes`, personal-data reads are audited, TTS "
            "history and conversation audio are kept only when configured. The IP allow-list "
            "(403 `ip_not_allowed`) applies in either mode and must include the caller."
        ),
        body=ComplianceBody,
        responses=ok(ComplianceModel),
    ),
}
