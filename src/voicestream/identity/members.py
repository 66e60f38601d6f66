"""Who belongs to a workspace: invitations, role changes, removals, new workspaces.

The rules live here; ``rest/workspaces.py`` is the HTTP shell, ``store/members.py`` and
``store/invitations.py`` hold the SQL, and ``identity/policy.py`` has already refused
editors and viewers before any of this runs.

What an admin may not do: anything that makes or unmakes an owner (invite one or cancel an
owner's invitation, promote someone to owner, change or remove an owner). Owners may do all
of it, except leave the workspace without an owner (409). A removed member loses the
workspace at once: the auth middleware reads the membership on every request, and the keys
they made there are revoked in the same transaction. What they opened with their session or
a ticket they minted closes too, as it does when they are made a viewer (who may open
nothing): at once in this process (``on_access_lost``, the socket registry's hook), within
the registry's poll in the others; their keys' sockets close within that poll.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from aiohttp import web

from ..errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from ..store import db
from ..store.invitations import Invitation, InvitationRepository
from ..store.keys import Principal, Role
from ..store.members import Member, MemberRepository, Removal
from ..store.users import User
from .access_tokens import EMAIL_TOKEN_PREFIX, hash_token, new_email_token, token_shape_ok
from .mail import Mailer

__all__ = ["INVITATION_TTL_S", "MEMBERS", "AccessLost", "Members"]

log = logging.getLogger(__name__)

INVITATION_TTL_S: Final = 7 * 86_400  # long enough for a colleague back from a week away
_BAD_INVITATION: Final = "this invitation is invalid, expired or already used"


def _refuse_owner_change(principal: Principal, what: str) -> None:
    if principal.role != "owner":
        raise Forbidden(
            f"only an owner may {what}; this role is {principal.role}",
            details={"role": principal.role, "required": "owner"},
        )


# Called with (workspace id, user id) when a member may no longer open anything there.
AccessLost = Callable[[UUID, UUID], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Members:
    members: MemberRepository
    invitations: InvitationRepository
    mailer: Mailer
    on_access_lost: list[AccessLost] = field(default_factory=list)

    @classmethod
    def open(cls, pool: db.Pool, mailer: Mailer) -> Members:
        return cls(MemberRepository(pool), InvitationRepository(pool), mailer)

    async def invite(self, principal: Principal, email: str, role: Role) -> Invitation:
        """Mail ``email`` a single-use token that makes its holder a ``role`` here.

        Raises Forbidden (an admin inviting an owner) or ServiceUnavailable (the mail could
        not be handed over; the invitation is then useless, ask again).
        """
        if role == "owner":
            _refuse_owner_change(principal, "invite an owner")
        token = new_email_token()
        invitation = await self.invitations.create(
            principal.workspace_id,
            email,
            role,
            hash_token(token),
            INVITATION_TTL_S,
            principal.user_id,
        )
        text = (
            f"You are invited to join the voicestream workspace {principal.workspace_name!r} "
            f"as {role}.\n\nSign in (or sign up) with this address, then send this token to "
            f"POST /v1/invitations/accept (it works once and expires in "
            f"{INVITATION_TTL_S // 86_400} days):\n\n    {token}\n\n"
            "If you do not know why you got this, ignore this message.\n"
        )
        try:
            await self.mailer.send(email, f"Join {principal.workspace_name} on voicestream", text)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("could not send an invitation mail: %s", exc)
            raise ServiceUnavailable(
                "the invitation mail could not be sent; try again shortly",
                details={"service": "mail"},
            ) from exc
        return invitation

    async def accept(self, user: User, token: str) -> Invitation:
        """Make ``user`` a member with the invited role. Raises NotFound (a bad, used or
        expired token), Forbidden (the invitation is for another address) or Conflict
        (already a member); the last two leave the invitation usable."""
        if not token_shape_ok(token, EMAIL_TOKEN_PREFIX):
            raise NotFound(_BAD_INVITATION)
        result = await self.invitations.accept(hash_token(token), user.id, user.email)
        match result.outcome:
            case "joined":
                assert result.invitation is not None
                return result.invitation
            case "wrong_email":
                raise Forbidden(
                    "this invitation is for another e-mail address; sign in with the address "
                    "it was sent to"
                )
            case "already_member":
                raise Conflict("you are already a member of this workspace")
            case _:
                raise NotFound(_BAD_INVITATION)

    async def cancel_invitation(self, principal: Principal, invitation_id: UUID) -> Invitation:
        """Cancel a pending (or expired) invitation: its token then fails like an unknown one.

        Raises NotFound (none here), Forbidden (an admin and an owner's invitation, which only
        an owner may make) or Conflict (already accepted: remove the member instead).
        """
        invitation = await self.invitations.get(principal.workspace_id, invitation_id)
        if invitation.role == "owner":
            _refuse_owner_change(principal, "cancel an owner's invitation")
        cancelled = await self.invitations.cancel(principal.workspace_id, invitation_id)
        if cancelled is None:
            # Accepted (perhaps just now), or cancelled by someone else just now: NotFound.
            await self.invitations.get(principal.workspace_id, invitation_id)
            raise Conflict(
                "this invitation was already accepted; remove the member instead",
                details={"invitation_id": str(invitation_id)},
            )
        return cancelled

    async def provision(self, workspace_id: UUID, user_id: UUID, role: Role) -> Member | None:
        """Make an existing account a member, as an identity provider asks (SAML's
        just-in-time sign-in, SCIM); None when it is one already. Never an owner: owners are
        made by owners."""
        if role == "owner":
            raise Forbidden("an identity provider may not make an owner")
        return await self.members.add(workspace_id, user_id, role)

    async def change_role(
        self, principal: Principal, user_id: UUID, role: Role
    ) -> tuple[Role, Member]:
        """Returns the role before and the member now. Raises NotFound, Forbidden or
        LastOwner (409)."""
        current = await self.members.get(principal.workspace_id, user_id)
        if "owner" in (role, current.role):
            _refuse_owner_change(principal, "make or unmake an owner")
        before, member = await self.members.set_role(principal.workspace_id, user_id, role)
        if role == "viewer" and before != "viewer":
            await self._access_lost(principal.workspace_id, user_id)
        return before, member

    async def remove(self, principal: Principal, user_id: UUID) -> Removal:
        """Raises NotFound, Forbidden or LastOwner (409)."""
        current = await self.members.get(principal.workspace_id, user_id)
        if current.role == "owner":
            _refuse_owner_change(principal, "remove an owner")
        removal = await self.members.remove(principal.workspace_id, user_id)
        await self._access_lost(principal.workspace_id, user_id)
        return removal

    async def sessions_ended(self, user_id: UUID, workspace_ids: list[UUID]) -> None:
        """The user signed out everywhere: what they opened in these workspaces with a
        session, or a ticket a session minted, closes as on a removal (the same hook); in
        other processes the registry's poll reads ``users.sessions_revoked_at``."""
        for workspace_id in workspace_ids:
            await self._access_lost(workspace_id, user_id)

    async def _access_lost(self, workspace_id: UUID, user_id: UUID) -> None:
        # The change is made; a hook that fails leaves the closing to the registry's poll.
        results = await asyncio.gather(
            *(hook(workspace_id, user_id) for hook in self.on_access_lost),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, Exception):
                log.warning("closing a removed member's connections failed: %r", result)


MEMBERS: web.AppKey[Members] = web.AppKey("voicestream_members", Members)
