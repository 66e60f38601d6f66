"""The OpenAPI entries of the workspace's admin console (``/v1/admin/seats``, ``/usage``,
``/audit-logs/export``, ``/settings``: rest/admin_seats.py, admin_audit.py, admin_settings.py)
and of the server operator's views (``/v1/operator/...``: rest/operator.py), merged into
``OPERATIONS``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..rest.admin_audit import AuditExportQuery
from ..rest.admin_seats import SeatList, SeatUsagePage, SeatUsageQuery
from ..rest.admin_settings import AdminSettingsBody, AdminSettingsModel
from ..rest.openapi import NO_CONTENT, STRING, Op, Resp, ok
from ..rest.operator import (
    OperatorUsage,
    OperatorWorkspace,
    OperatorWorkspacePage,
    PeriodQuery,
    WorkspacesQuery,
)
from ..rest.workspaces import InvitationModel, InviteBody, MemberChangeBody, SeatModel

__all__ = ["ADMIN_OPERATIONS"]

_ADMIN: Final = "admin"
_OPERATOR: Final = "operator"
_ONLY_OPERATOR: Final = (
    "Only an operator key (`voicestream admin keys create`, sent as `Authorization: Bearer`); "
    "a workspace's keys and members, owners included, get 403."
)
_EXPORT: Final = Resp(
    "The whole filtered range, newest first, streamed: CSV (cells that would start a "
    "spreadsheet formula get a leading `'`) or a JSON array of the listing's entries; "
    "`Content-Disposition: attachment` names the file.",
    schema=STRING,
    media="text/csv",
)

ADMIN_OPERATIONS: Final[Mapping[tuple[str, str], Op]] = {
    ("GET", "/v1/admin/seats"): Op(
        "Every seat: role, own quotas, the quota that applies, this month's use; and the "
        "pending invitations",
        _ADMIN,
        responses=ok(SeatList),
    ),
    ("POST", "/v1/admin/seats"): Op(
        "Invite someone into a seat (mailed a single-use token)",
        _ADMIN,
        body=InviteBody,
        responses=ok(InvitationModel, 201, "The invitation (never its token)."),
    ),
    ("PATCH", "/v1/admin/seats/{user_id}"): Op(
        "Change a seat's role, its own quotas, or both",
        _ADMIN,
        body=MemberChangeBody,
        responses=ok(SeatModel),
    ),
    ("DELETE", "/v1/admin/seats/{user_id}"): Op(
        "Remove a member: their access, keys and sockets end at once",
        _ADMIN,
        responses={204: NO_CONTENT},
    ),
    ("GET", "/v1/admin/usage"): Op(
        "Usage per seat over a period (default: this calendar month)",
        _ADMIN,
        query=SeatUsageQuery,
        responses=ok(SeatUsagePage),
    ),
    ("GET", "/v1/admin/audit-logs/export"): Op(
        "Export the audit log as CSV or JSON (the export itself is recorded)",
        _ADMIN,
        query=AuditExportQuery,
        responses={200: _EXPORT},
    ),
    ("GET", "/v1/admin/settings"): Op(
        "The workspace's settings", _ADMIN, responses=ok(AdminSettingsModel)
    ),
    ("PATCH", "/v1/admin/settings"): Op(
        "Rename the workspace, change its allowed origins, or both",
        _ADMIN,
        body=AdminSettingsBody,
        responses=ok(AdminSettingsModel),
    ),
    ("GET", "/v1/operator/workspaces"): Op(
        "Every workspace: members, live keys, plan and usage over a period",
        _OPERATOR,
        auth="user",
        description=_ONLY_OPERATOR,
        query=WorkspacesQuery,
        responses=ok(OperatorWorkspacePage),
    ),
    ("GET", "/v1/operator/workspaces/{workspace_id}"): Op(
        "One workspace: members, live keys, plan and usage over a period",
        _OPERATOR,
        auth="user",
        description=_ONLY_OPERATOR,
        query=PeriodQuery,
        responses=ok(OperatorWorkspace),
    ),
    ("GET", "/v1/operator/usage"): Op(
        "The whole server's usage over a period",
        _OPERATOR,
        auth="user",
        description=_ONLY_OPERATOR,
        query=PeriodQuery,
        responses=ok(OperatorUsage),
    ),
}
