"""SCIM 2.0 provisioning: an identity provider creates, changes and removes a workspace's
people and groups, and through them who is a member with which role.

A User provisions the account with its e-mail address (its primary ``emails`` value, else its
``userName`` when that is an address), created if none exists yet. While the User is active,
the account is a member of the workspace; its role is the highest that a group it is in maps
to (``scim_settings.group_roles``, by the group's displayName), else the workspace's SCIM
default role. Deprovisioning (DELETE, or ``active`` false) goes through ``Members.remove``,
so access ends at once: the membership is read on every request, the keys the member made
are revoked and what they opened closes. Owners are the owners' business: SCIM never makes,
changes or removes one (it leaves an owner's membership as it is).

The rules live here; ``identity/scim_documents.py`` reads and writes the SCIM documents,
``store/scim_resources.py`` and ``store/scim_tokens.py`` hold the SQL, ``rest/scim.py`` is the
HTTP shell.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from scim2_models import Group, User

from ..errors import Conflict, NotFound, ValidationFailed
from ..store import db
from ..store.keys import Principal, Role, role_rank
from ..store.scim_resources import (
    ScimGroupFields,
    ScimGroupRow,
    ScimResourceRepository,
    ScimUserFields,
    ScimUserRow,
)
from ..store.scim_tokens import ScimSettings, ScimToken, ScimTokenRepository
from ..store.users import UserRepository
from .access_tokens import hash_token
from .accounts import check_email
from .members import Members
from .scim_documents import stored_document

__all__ = ["SCIM_TOKEN_PREFIX", "ScimProvisioning", "account_email", "group_member_ids"]

log = logging.getLogger(__name__)

SCIM_TOKEN_PREFIX: Final = "vs_scim_"
_TOKEN_SHAPE: Final = re.compile(r"vs_scim_[A-Za-z0-9_-]{43}")


def new_scim_token() -> str:
    return SCIM_TOKEN_PREFIX + secrets.token_urlsafe(32)


def account_email(user: User[Any]) -> str | None:
    """The address of the account a User provisions; None when it names no usable one."""
    candidates: list[str] = []
    emails = user.emails or []
    candidates += [str(e.value) for e in emails if e.primary and e.value]
    candidates += [str(e.value) for e in emails if e.value]
    if user.user_name:
        candidates.append(user.user_name)
    for candidate in candidates:
        try:
            return check_email(candidate)
        except ValueError:
            continue
    return None


def group_member_ids(group: Group) -> list[UUID]:
    """The SCIM ids a Group's ``members`` name. Raises ValidationFailed for one that is no id
    of ours (so it can be no User here)."""
    ids: list[UUID] = []
    for member in group.members or []:
        try:
            ids.append(UUID(str(member.value)))
        except ValueError:
            raise NotFound(
                "a group member is no User of this workspace",
                details={"members": [str(member.value)[:100]]},
            ) from None
    return ids


@dataclass(frozen=True, slots=True)
class ScimProvisioning:
    resources: ScimResourceRepository
    tokens: ScimTokenRepository
    users: UserRepository
    members: Members

    @classmethod
    def open(cls, pool: db.Pool, members: Members) -> ScimProvisioning:
        return cls(
            ScimResourceRepository(pool), ScimTokenRepository(pool), UserRepository(pool), members
        )

    # --- credentials and settings -------------------------------------------------------

    async def mint_token(self, workspace_id: UUID, name: str) -> tuple[str, ScimToken]:
        """A new bearer token (in clear, shown once) and what is kept of it."""
        token = new_scim_token()
        return token, await self.tokens.create(workspace_id, name, hash_token(token))

    async def workspace_of(self, token: str) -> UUID | None:
        """The workspace a live token provisions; None for anything else."""
        if _TOKEN_SHAPE.fullmatch(token) is None:
            return None
        return await self.tokens.authenticate(hash_token(token))

    async def save_settings(self, workspace_id: UUID, settings: ScimSettings) -> ScimSettings:
        """Store the mapping and apply it to every User at once."""
        roles = [settings.default_role, *settings.group_roles.values()]
        if "owner" in roles:
            raise ValidationFailed("SCIM may not make owners; map groups to admin or below")
        saved = await self.tokens.save_settings(workspace_id, settings)
        await self._sync(workspace_id, await self.resources.list_users(workspace_id, None))
        return saved

    # --- Users --------------------------------------------------------------------------

    async def create_user(self, workspace_id: UUID, user: User[Any]) -> ScimUserRow:
        row = await self.resources.create_user(
            workspace_id,
            _user_fields(user),
        )
        try:
            row = await self._link(row, user)
            await self._sync(workspace_id, [row])
        except Exception:
            # Nothing half-made: a User whose account could not be provisioned is not kept.
            await self.resources.delete_user(workspace_id, row.id)
            raise
        return row

    async def replace_user(self, workspace_id: UUID, scim_id: UUID, user: User[Any]) -> ScimUserRow:
        row = await self.resources.replace_user(
            workspace_id,
            scim_id,
            _user_fields(user),
        )
        row = await self._link(row, user)
        await self._sync(workspace_id, [row])
        return row

    async def delete_user(self, workspace_id: UUID, scim_id: UUID) -> None:
        row = await self.resources.delete_user(workspace_id, scim_id)
        if row.user_id is not None:
            await self._set_access(workspace_id, row.user_id, None)

    # --- Groups -------------------------------------------------------------------------

    async def create_group(self, workspace_id: UUID, group: Group) -> ScimGroupRow:
        row = await self.resources.create_group(
            workspace_id,
            _group_fields(group),
        )
        await self._sync_ids(workspace_id, row.member_ids)
        return row

    async def replace_group(self, workspace_id: UUID, group_id: UUID, group: Group) -> ScimGroupRow:
        row, before = await self.resources.replace_group(
            workspace_id,
            group_id,
            _group_fields(group),
        )
        await self._sync_ids(workspace_id, row.member_ids | before)
        return row

    async def delete_group(self, workspace_id: UUID, group_id: UUID) -> None:
        row = await self.resources.delete_group(workspace_id, group_id)
        await self._sync_ids(workspace_id, row.member_ids)

    # --- accounts and memberships -------------------------------------------------------

    async def _link(self, row: ScimUserRow, user: User[Any]) -> ScimUserRow:
        if row.user_id is not None:
            return row  # the account stays the one first provisioned
        email = account_email(user)
        if email is None:
            return row
        account = await self.users.by_email(email)
        if account is None:
            try:
                # The identity provider vouches for the address it provisions.
                account = await self.users.create(email, None, verified=True)
            except Conflict:  # created meanwhile
                account = await self.users.by_email(email)
        if account is None:  # pragma: no cover - deleted in the same instant
            return row
        await self.resources.set_account(row.workspace_id, row.id, account.id)
        return await self.resources.get_user(row.workspace_id, row.id)

    async def _sync_ids(self, workspace_id: UUID, scim_ids: Iterable[UUID]) -> None:
        rows = []
        for scim_id in scim_ids:
            try:
                rows.append(await self.resources.get_user(workspace_id, scim_id))
            except NotFound:
                continue  # deleted meanwhile: its own deletion took the access away
        await self._sync(workspace_id, rows)

    async def _sync(self, workspace_id: UUID, rows: Iterable[ScimUserRow]) -> None:
        settings = await self.tokens.settings(workspace_id)
        for row in rows:
            if row.user_id is None:
                continue
            role: Role | None = None
            if row.active:
                default: Role = settings.default_role
                groups = await self.resources.groups_of(workspace_id, row.id)
                mapped = [settings.group_roles[n] for _, n in groups if n in settings.group_roles]
                best: Role = max([default, *mapped], key=role_rank)
                role = best
            await self._set_access(workspace_id, row.user_id, role)

    async def _set_access(self, workspace_id: UUID, user_id: UUID, role: Role | None) -> None:
        try:
            current = await self.members.members.get(workspace_id, user_id)
        except NotFound:
            current = None
        if current is not None and current.role == "owner":
            return
        # Acts as the workspace's administration, which may change anyone but an owner.
        actor = Principal(None, workspace_id, "", "admin")
        if role is None:
            if current is not None:
                await self.members.remove(actor, user_id)
                log.info("SCIM deprovisioned user %s from workspace %s", user_id, workspace_id)
        elif current is None:
            await self.members.provision(workspace_id, user_id, role)
        elif current.role != role:
            await self.members.change_role(actor, user_id, role)


def _user_fields(user: User[Any]) -> ScimUserFields:
    return ScimUserFields(
        user_name=str(user.user_name),
        external_id=user.external_id,
        display_name=user.display_name,
        active=user.active is not False,
        document=stored_document(user),
    )


def _group_fields(group: Group) -> ScimGroupFields:
    return ScimGroupFields(
        display_name=str(group.display_name),
        external_id=group.external_id,
        document=stored_document(group),
        member_ids=group_member_ids(group),
    )
