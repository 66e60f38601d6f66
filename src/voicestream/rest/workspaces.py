"""``/v1/workspaces…`` and ``/v1/invitations/accept``: workspaces and their members.

A thin shell over ``identity/members.py``. Routes under ``/v1/workspaces/{id}/`` act in the
workspace they name (the auth middleware resolves a signed-in user's membership there, so the
role rules of ``identity/policy.py`` see the right role); a workspace the caller is no member
of, or whose id is malformed, answers 404 like one that does not exist.

``GET``/``POST /v1/workspaces`` and ``POST /v1/invitations/accept`` are for signed-in people
and need no membership (someone invited may have none yet): the auth middleware lets them
through (``SESSION_PATHS``) and they check the access token themselves, as ``GET
/v1/auth/me`` does. An API key belongs to one workspace and gets 401 here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Final
from uuid import UUID

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from ..errors import AuthError, NotFound
from ..identity.accounts import MAX_EMAIL_CHARS, check_email
from ..identity.audit_trail import audit
from ..identity.members import MEMBERS, Members
from ..identity.page_origins import MAX_ORIGINS, PAGE_ORIGINS
from ..identity.quotas import set_seat_quotas
from ..identity.request_principal import principal_of
from ..protocols.json_messages import validate_model
from ..store.audit import Actor
from ..store.invitations import MAX_PAGE_SIZE as MAX_INVITATION_PAGE
from ..store.invitations import Invitation, InvitationStatus
from ..store.keys import KEY_PREFIX, Principal, Role
from ..store.members import Member
from ..store.usage import USAGE_KINDS, UsageKind
from ..store.users import User
from .auth import ACCOUNTS
from .bodies import read_model
from .resources import USAGE
from .secret_fields import SECRET_INPUT

__all__ = [
    "INVITATIONS_PREFIX",
    "MEMBERS",
    "SESSION_PATHS",
    "WORKSPACES_PREFIX",
    "AcceptedInvitation",
    "InvitationModel",
    "InvitationPage",
    "InvitationQuery",
    "InviteBody",
    "MemberChangeBody",
    "MemberList",
    "MemberModel",
    "SeatModel",
    "WorkspaceList",
    "WorkspaceModel",
    "WorkspaceSettingsBody",
    "WorkspaceSettingsModel",
    "change_origins",
    "change_seat",
    "invitations_app",
    "invite_seat",
    "remove_seat",
    "seat_of",
    "workspaces_app",
]

SESSION_PATHS: Final = frozenset({"/v1/workspaces", "/v1/invitations/accept"})

Email = Annotated[str, StringConstraints(max_length=MAX_EMAIL_CHARS), AfterValidator(check_email)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateWorkspaceBody(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class InviteBody(_Body):
    email: Email
    role: Role


class SeatQuotasBody(_Body):
    """A member's own monthly quotas, in the recorded units; null clears one (the server's
    default seat quota applies again), an absent kind stays as it is."""

    tts_characters: Annotated[int, Field(ge=0)] | None = None
    stt_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    conversation_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class MemberChangeBody(_Body):
    """A new role, new quotas of the member's own, or both."""

    role: Role | None = None
    quotas: SeatQuotasBody | None = None

    @model_validator(mode="after")
    def _something(self) -> MemberChangeBody:
        if self.role is None and self.quotas is None:
            raise ValueError("send role, quotas or both")
        return self


class AcceptBody(_Body):
    token: Annotated[str, StringConstraints(min_length=1, max_length=200), SECRET_INPUT]


class WorkspaceModel(BaseModel):
    id: UUID
    name: str
    role: Role  # the caller's
    joined_at: datetime


class WorkspaceList(BaseModel):
    workspaces: list[WorkspaceModel]


Origin = Annotated[str, StringConstraints(min_length=1, max_length=300)]


class WorkspaceSettingsBody(_Body):
    # scheme://host[:port] each; normalized, no wildcard (identity/page_origins.py says why).
    allowed_origins: list[Origin] | None = Field(None, max_length=MAX_ORIGINS)


class WorkspaceSettingsModel(BaseModel):
    id: UUID
    name: str
    # Pages (besides the server's own and VOICESTREAM_ALLOWED_ORIGINS) that may use this
    # workspace's browser sockets, WebRTC calls and widget.
    allowed_origins: list[str]


class MemberModel(BaseModel):
    user_id: UUID
    email: str
    role: Role
    joined_at: datetime

    @classmethod
    def of(cls, member: Member) -> MemberModel:
        return cls(
            user_id=member.user_id,
            email=member.email,
            role=member.role,
            joined_at=member.joined_at,
        )


class SeatQuotasModel(BaseModel):
    """The member's own quotas (null: none of their own, the server's default applies)."""

    tts_characters: float | None = None
    stt_seconds: float | None = None
    conversation_seconds: float | None = None


class SeatModel(MemberModel):
    quotas: SeatQuotasModel


class MemberList(BaseModel):
    members: list[SeatModel]


class InvitationModel(BaseModel):
    """An invitation, never its token (the mail has it; the server keeps only a hash)."""

    id: UUID
    workspace_id: UUID
    email: str
    role: Role
    status: InvitationStatus
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None = None

    @classmethod
    def of(cls, invitation: Invitation) -> InvitationModel:
        return cls(
            id=invitation.id,
            workspace_id=invitation.workspace_id,
            email=invitation.email,
            role=invitation.role,
            status=invitation.status,
            created_at=invitation.created_at,
            expires_at=invitation.expires_at,
            accepted_at=invitation.accepted_at,
        )


class InvitationQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: InvitationStatus = "pending"
    limit: int = Field(50, ge=1, le=MAX_INVITATION_PAGE)
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class InvitationPage(BaseModel):
    invitations: list[InvitationModel]
    next_cursor: str | None  # None on the last page


class AcceptedInvitation(BaseModel):
    workspace_id: UUID
    role: Role


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


def _members(request: web.Request) -> Members:
    return request.config_dict[MEMBERS]


async def _signed_in_user(request: web.Request) -> User:
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not token or token.startswith(KEY_PREFIX):
        raise AuthError(
            f"{request.path} is for signed-in people: send 'Authorization: Bearer <access "
            "token>' from /v1/auth/login (an API key belongs to one workspace already)"
        )
    return await request.config_dict[ACCOUNTS].user_of(token)


def in_workspace(request: web.Request) -> Principal:
    """The principal, if it acts in the workspace the path names; else 404."""
    principal = principal_of(request)
    raw = request.match_info["workspace_id"]
    try:
        asked = UUID(raw)
    except ValueError:
        asked = None
    if asked != principal.workspace_id:
        raise NotFound("no such workspace", details={"workspace_id": raw})
    return principal


def _user_id(request: web.Request) -> UUID:
    raw = request.match_info["user_id"]
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound("no such member", details={"user_id": raw}) from None


async def list_workspaces(request: web.Request) -> web.Response:
    user = await _signed_in_user(request)
    memberships = await request.config_dict[ACCOUNTS].memberships(user.id)
    body = WorkspaceList(
        workspaces=[
            WorkspaceModel(
                id=m.workspace_id, name=m.workspace_name, role=m.role, joined_at=m.created_at
            )
            for m in memberships
        ]
    )
    return _json(body)


async def create_workspace(request: web.Request) -> web.Response:
    user = await _signed_in_user(request)
    body = await read_model(request, CreateWorkspaceBody)
    workspace_id, created_at = await _members(request).members.create_workspace(body.name, user.id)
    # After the fact: a failed entry is a 503 and the workspace stands (a retry is a 409).
    await audit(
        request,
        "workspace.created",
        "workspace",
        workspace_id,
        details={"name": body.name},
        actor=Actor(display=user.email, user_id=user.id),
        workspace_id=workspace_id,
    )
    return _json(
        WorkspaceModel(id=workspace_id, name=body.name, role="owner", joined_at=created_at), 201
    )


async def accept_invitation(request: web.Request) -> web.Response:
    user = await _signed_in_user(request)
    body = await read_model(request, AcceptBody)
    invitation = await _members(request).accept(user, body.token)
    # After the fact: the membership stands whether or not the entry could be written.
    await audit(
        request,
        "member.joined",
        "user",
        user.id,
        details={"role": invitation.role, "invitation_id": str(invitation.id)},
        actor=Actor(display=user.email, user_id=user.id),
        workspace_id=invitation.workspace_id,
    )
    return _json(AcceptedInvitation(workspace_id=invitation.workspace_id, role=invitation.role))


async def list_members(request: web.Request) -> web.Response:
    principal = in_workspace(request)
    members = await _members(request).members.list(principal.workspace_id)
    quotas = await request.config_dict[USAGE].seat_quotas_of_members(principal.workspace_id)
    return _json(
        MemberList(members=[seat_of(member, quotas.get(member.user_id, {})) for member in members])
    )


def seat_of(member: Member, quotas: Mapping[UsageKind, Decimal]) -> SeatModel:
    own = SeatQuotasModel(**{kind: float(value) for kind, value in quotas.items()})
    return SeatModel(**MemberModel.of(member).model_dump(), quotas=own)


async def invite(request: web.Request) -> web.Response:
    principal = in_workspace(request)
    body = await read_model(request, InviteBody)
    return _json(await invite_seat(request, principal, body), 201)


async def invite_seat(
    request: web.Request, principal: Principal, body: InviteBody
) -> InvitationModel:
    """Invite someone into the principal's workspace, audited (also ``/v1/admin/seats``)."""
    invitation = await _members(request).invite(principal, body.email, body.role)
    await audit(
        request,
        "member.invited",
        "invitation",
        invitation.id,
        details={"email": invitation.email, "role": invitation.role},
    )
    return InvitationModel.of(invitation)


async def list_invitations(request: web.Request) -> web.Response:
    principal = in_workspace(request)
    query = validate_model(InvitationQuery, dict(request.query), "the query")
    page = await _members(request).invitations.list(
        principal.workspace_id, query.status, limit=query.limit, cursor=query.cursor
    )
    body = InvitationPage(
        invitations=[InvitationModel.of(invitation) for invitation in page.invitations],
        next_cursor=page.next_cursor,
    )
    return _json(body)


async def cancel_invitation(request: web.Request) -> web.Response:
    principal = in_workspace(request)
    raw = request.match_info["invitation_id"]
    try:
        invitation_id = UUID(raw)
    except ValueError:
        raise NotFound("no such invitation", details={"invitation_id": raw}) from None
    invitation = await _members(request).cancel_invitation(principal, invitation_id)
    # After the fact: the invitation is gone; a failed entry is reported as a 503.
    await audit(
        request,
        "member.invitation_cancelled",
        "invitation",
        invitation.id,
        details={"email": invitation.email, "role": invitation.role},
    )
    return web.Response(status=204)


async def change_member(request: web.Request) -> web.Response:
    principal = in_workspace(request)
    user_id = _user_id(request)
    body = await read_model(request, MemberChangeBody)
    return _json(await change_seat(request, principal, user_id, body))


async def change_seat(
    request: web.Request, principal: Principal, user_id: UUID, body: MemberChangeBody
) -> SeatModel:
    """A member's new role and/or quotas in the principal's workspace, audited (also
    ``/v1/admin/seats``)."""
    members = _members(request)
    usage = request.config_dict[USAGE]
    if body.role is not None:
        before, member = await members.change_role(principal, user_id, body.role)
        # After the fact: the role has changed; a failed entry is reported as a 503.
        await audit(
            request,
            "member.role_changed",
            "user",
            user_id,
            details={"from": before, "to": member.role},
        )
    if body.quotas is not None:
        # Only the kinds sent: an absent one stays, a null one is cleared.
        changes: dict[UsageKind, Decimal | None] = {
            kind: None if value is None else Decimal(str(value))
            for kind, value in body.quotas.model_dump(exclude_unset=True).items()
            if kind in USAGE_KINDS
        }
        member, quotas = await set_seat_quotas(usage, members.members, principal, user_id, changes)
        await audit(
            request,
            "member.quotas_changed",
            "user",
            user_id,
            # Decimal text: the audit log keeps no floats (their JSON form is not stable).
            details={kind: None if v is None else str(v) for kind, v in changes.items()},
        )
    else:
        member = await members.members.get(principal.workspace_id, user_id)
        quotas = await usage.seat_quotas(principal.workspace_id, user_id)
    return seat_of(member, quotas)


async def remove_member(request: web.Request) -> web.Response:
    await remove_seat(request, in_workspace(request), _user_id(request))
    return web.Response(status=204)


async def remove_seat(request: web.Request, principal: Principal, user_id: UUID) -> None:
    """Remove a member from the principal's workspace, audited (also ``/v1/admin/seats``)."""
    removal = await _members(request).remove(principal, user_id)
    await audit(
        request,
        "member.removed",
        "user",
        user_id,
        details={
            "role": removal.member.role,
            "revoked_keys": [str(key_id) for key_id in removal.revoked_key_ids],
        },
    )


async def get_workspace(request: web.Request) -> web.Response:
    principal = in_workspace(request)
    origins = await request.config_dict[PAGE_ORIGINS].read(principal)
    return _json(_settings(principal, origins))


async def change_workspace(request: web.Request) -> web.Response:
    principal = in_workspace(request)
    body = await read_model(request, WorkspaceSettingsBody)
    origins = await change_origins(request, principal, body.allowed_origins)
    return _json(_settings(principal, origins))


async def change_origins(
    request: web.Request, principal: Principal, origins: list[str] | None
) -> list[str]:
    """Replace the workspace's page origins (None: keep them), audited; the list now (also
    ``/v1/admin/settings``)."""
    page_origins = request.config_dict[PAGE_ORIGINS]
    if origins is None:
        return await page_origins.read(principal)
    before = await page_origins.read(principal)
    now = await page_origins.replace(principal, origins)
    # After the fact: the list has changed; a failed entry is reported as a 503.
    await audit(
        request,
        "workspace.origins_changed",
        "workspace",
        principal.workspace_id,
        details={"from": before, "to": now},
    )
    return now


def _settings(principal: Principal, origins: list[str]) -> WorkspaceSettingsModel:
    return WorkspaceSettingsModel(
        id=principal.workspace_id, name=principal.workspace_name, allowed_origins=origins
    )


WORKSPACES_PREFIX: Final = "/v1/workspaces"
INVITATIONS_PREFIX: Final = "/v1/invitations"


def workspaces_app() -> web.Application:
    """The sub-app to mount at ``WORKSPACES_PREFIX`` (paths relative to it; "" is the prefix):
    workspaces, their settings, members and invitations."""
    app = web.Application()
    app.add_routes(
        [
            web.get("/{workspace_id}", get_workspace, allow_head=False),
            web.patch("/{workspace_id}", change_workspace),
            web.get("", list_workspaces, allow_head=False),
            web.post("", create_workspace),
            web.get("/{workspace_id}/members", list_members, allow_head=False),
            web.post("/{workspace_id}/invitations", invite),
            web.get("/{workspace_id}/invitations", list_invitations, allow_head=False),
            web.delete("/{workspace_id}/invitations/{invitation_id}", cancel_invitation),
            web.patch("/{workspace_id}/members/{user_id}", change_member),
            web.delete("/{workspace_id}/members/{user_id}", remove_member),
        ]
    )
    return app


def invitations_app() -> web.Application:
    """The sub-app to mount at ``INVITATIONS_PREFIX``: accepting an invitation, which the
    invited person does before they are a member of anything."""
    app = web.Application()
    app.add_routes([web.post("/accept", accept_invitation)])
    return app
