"""People and sign-in: sign-up, e-mail verification, passwords, magic links, sessions.

The rules live here; ``rest/auth.py`` is the HTTP shell and ``store/users.py`` and
``store/sign_in_tokens.py`` hold the SQL.

What callers can learn about who has an account: nothing. Sign-up answers the same for a new
address and a registered one (the owner of a registered one gets a mail saying someone tried),
a wrong password and an unknown address fail with the same message after the same argon2 work,
and magic-link and reset requests are always accepted. A workspace name that is taken is the
one thing sign-up refuses (409), whatever the address.

Unverified addresses may sign in and use the workspaces they own: verification proves the
mailbox, which matters once people invite others (a later step), not for one's own workspace.
A magic link or a password reset proves the mailbox too, so either verifies the address.
"""

from __future__ import annotations

import logging
import re
import secrets
import smtplib
import time
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from ..config import Settings
from ..errors import AuthError, Forbidden
from ..store import db
from ..store.keys import Principal
from ..store.mfa import MfaRepository
from ..store.passkeys import PasskeyRepository
from ..store.secrets import SecretBox
from ..store.sign_in_tokens import EmailPurpose, SignInTokenRepository
from ..store.users import Membership, User, UserRepository
from .access_tokens import (
    EMAIL_TOKEN_PREFIX,
    REFRESH_TOKEN_PREFIX,
    AccessTokens,
    hash_token,
    new_email_token,
    new_refresh_token,
    token_shape_ok,
)
from .mail import Mailer
from .passkeys import Passkeys
from .passwords import Passwords, check_password_policy
from .second_factor import MfaChallenge, SecondFactors

__all__ = ["EMAIL_RULE", "MAX_EMAIL_CHARS", "Accounts", "TokenPair", "check_email", "open_accounts"]

log = logging.getLogger(__name__)

MAX_EMAIL_CHARS: Final = 254  # RFC 5321's limit on a forward path
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
EMAIL_RULE: Final = "must be an e-mail address such as name@example.com"
_WRONG_CREDENTIALS: Final = "wrong e-mail or password"
_BAD_EMAIL_TOKEN: Final = "this link is invalid, expired or already used"


def check_email(value: str) -> str:
    """``value`` stripped, if it is an e-mail address; raises ValueError otherwise."""
    email = value.strip()
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL.fullmatch(email):
        raise ValueError(EMAIL_RULE)
    return email


def _personal_workspace(email: str) -> str:
    """A fresh name for someone who named no workspace: their mailbox name and a random tail."""
    local = re.sub(r"[^A-Za-z0-9._-]+", "-", email.split("@")[0]).strip("-._")[:40]
    return f"{local or 'personal'}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lives
    user_id: UUID  # whom they speak for (the audit log's actor)


class Accounts:
    def __init__(
        self,
        settings: Settings,
        users: UserRepository,
        tokens: SignInTokenRepository,
        access: AccessTokens,
        mailer: Mailer,
        passwords: Passwords | None = None,
        second_factors: SecondFactors | None = None,
        passkeys: Passkeys | None = None,
    ) -> None:
        self.users = users
        self.second_factors = second_factors
        self.passkeys = passkeys
        self.tokens = tokens
        self.access = access
        self.mailer = mailer
        self.passwords = passwords or Passwords()
        self._refresh_ttl_s = settings.refresh_token_days * 86_400
        self._ttl_s: dict[EmailPurpose, int] = {
            "verify": settings.email_verification_hours * 3600,
            "magic": settings.magic_link_minutes * 60,
            "reset": settings.password_reset_minutes * 60,
        }

    # --- sign-up and verification -------------------------------------------------------

    async def sign_up(self, email: str, password: str | None, workspace: str | None) -> None:
        """Raises ValidationFailed (a weak password, a bad workspace name) or Conflict (the
        workspace name is taken). A registered address gets a mail, not an error."""
        if password is not None:
            check_password_policy(password, email=email)
        # Hashed even when the address turns out to be taken: the same work either way.
        password_hash = await self.passwords.hash(password) if password is not None else None
        user = await self.users.sign_up(
            email, password_hash, workspace or _personal_workspace(email)
        )
        if user is None:
            await self._mail(
                email,
                "Someone tried to sign up with your address",
                "Someone (perhaps you) tried to create a voicestream account with this address, "
                "which already has one.\n\nSign in as usual, or ask for a password reset or a "
                "magic link if you cannot. If it was not you, ignore this message.\n",
            )
            return
        await self._send_token(user, "verify")

    async def verify_email(self, token: str) -> None:
        user_id = await self._consume(token, "verify")
        await self.users.mark_verified(user_id)

    # --- sessions -----------------------------------------------------------------------

    async def login(self, email: str, password: str) -> TokenPair | MfaChallenge:
        user = await self.users.by_email(email)
        usable = user is not None and user.active
        check = await self.passwords.verify(user.password_hash if user else None, password)
        if not (check.ok and usable) or user is None:
            raise AuthError(_WRONG_CREDENTIALS)
        if check.new_hash is not None:
            # The stored hash used older parameters; the password is at hand only now.
            await self.users.set_password_hash(user.id, check.new_hash)
        return await self._sign_in_or_challenge(user.id, "password")

    async def refresh(self, refresh_token: str) -> TokenPair:
        """A new pair for a live refresh token. A token used before revokes its family."""
        if not token_shape_ok(refresh_token, REFRESH_TOKEN_PREFIX):
            raise AuthError("invalid refresh token")
        successor = new_refresh_token()
        rotation = await self.tokens.rotate_refresh(
            hash_token(refresh_token), hash_token(successor), self._refresh_ttl_s
        )
        match rotation.outcome:
            case "rotated":
                assert rotation.user_id is not None
                return self._pair(rotation.user_id, successor)
            case "reused":
                log.warning(
                    "refresh token reused after rotation: family %s of user %s revoked",
                    rotation.family_id,
                    rotation.user_id,
                )
                raise AuthError(
                    "this refresh token was already used; every session of that sign-in is "
                    "revoked, sign in again"
                )
            case "expired":
                raise AuthError("the refresh token has expired; sign in again")
            case _:
                raise AuthError("invalid refresh token")

    async def logout(self, refresh_token: str) -> None:
        """Revoke the sign-in ``refresh_token`` belongs to; unknown tokens are ignored."""
        if token_shape_ok(refresh_token, REFRESH_TOKEN_PREFIX):
            await self.tokens.revoke_family_of(hash_token(refresh_token))

    async def sign_out_everywhere(self, user_id: UUID) -> list[UUID]:
        """End every session of the user: all refresh tokens revoked, and access tokens
        issued before now refused at once (the middleware reads the user on each request).
        Returns the workspaces they are a member of: what they opened there must close
        (``Members.sessions_ended``)."""
        return await self.users.end_sessions(user_id, time.time())

    async def request_magic_link(self, email: str) -> None:
        user = await self.users.by_email(email)
        if user is not None and user.active:
            await self._send_token(user, "magic")

    async def redeem_magic_link(self, token: str) -> TokenPair | MfaChallenge:
        user_id = await self._consume(token, "magic")
        user = await self.users.get(user_id)
        if user is None or not user.active:
            raise AuthError(_BAD_EMAIL_TOKEN)
        await self.users.mark_verified(user_id)
        return await self._sign_in_or_challenge(user_id, "magic_link")

    async def request_password_reset(self, email: str) -> None:
        user = await self.users.by_email(email)
        if user is not None and user.active:
            await self._send_token(user, "reset")

    async def confirm_password_reset(self, token: str, password: str) -> UUID:
        """Set a new password; every refresh token of the user is revoked, and access tokens
        issued before now stop working. Returns the user's id."""
        # Looked at before it is used up: a password the policy refuses must not cost the
        # holder their link.
        user_id = None
        if token_shape_ok(token, EMAIL_TOKEN_PREFIX):
            user_id = await self.tokens.peek_email_token(hash_token(token), "reset")
        user = await self.users.get(user_id) if user_id is not None else None
        if user is None or not user.active:
            raise AuthError(_BAD_EMAIL_TOKEN)
        check_password_policy(password, email=user.email)
        password_hash = await self.passwords.hash(password)
        if await self._consume(token, "reset") != user.id:  # pragma: no cover - a hash clash
            raise AuthError(_BAD_EMAIL_TOKEN)
        await self.users.reset_password(user.id, password_hash, time.time())
        return user.id

    # --- who is calling -----------------------------------------------------------------

    async def user_of(self, access_token: str) -> User:
        """The active user an access token speaks for. Raises AuthError."""
        claims = self.access.verify(access_token)
        lookup = await self.users.session_principal(claims.user_id, None, claims.issued_at)
        user = await self.users.get(claims.user_id) if lookup.user_ok else None
        if user is None:
            raise AuthError("this session has ended; sign in again")
        return user

    async def memberships(self, user_id: UUID) -> list[Membership]:
        return await self.users.memberships(user_id)

    async def principal(self, access_token: str, workspace_id: UUID | None) -> Principal:
        """The principal of a request made with an access token: the user in ``workspace_id``
        (``X-Workspace-Id``), or in their oldest membership, with that membership's role.

        Raises:
            AuthError: a bad or expired token, or a user disabled or signed out since.
            Forbidden: the user is no member of that workspace (or of any).
        """
        claims = self.access.verify(access_token)
        lookup = await self.users.session_principal(claims.user_id, workspace_id, claims.issued_at)
        if not lookup.user_ok:
            raise AuthError("this session has ended; sign in again")
        if lookup.principal is None:
            raise Forbidden(
                "not a member of this workspace"
                if workspace_id is not None
                else "not a member of any workspace",
                details={"workspace_id": str(workspace_id)} if workspace_id else None,
            )
        return lookup.principal

    async def sign_in_with_second_factor(self, user_id: UUID) -> TokenPair:
        """Tokens for a user who passed ``SecondFactors.verify`` too, or signed in with a
        passkey. Raises AuthError if the account was disabled in between."""
        user = await self.users.get(user_id)
        if user is None or not user.active:
            raise AuthError("this account cannot sign in")
        return await self._sign_in(user_id)

    # --- helpers ------------------------------------------------------------------------

    async def _sign_in_or_challenge(
        self, user_id: UUID, first_factor: str
    ) -> TokenPair | MfaChallenge:
        # With a second factor on, the first one earns a challenge, never tokens.
        if self.second_factors is not None:
            challenge = await self.second_factors.challenge_for(user_id, first_factor)
            if challenge is not None:
                return challenge
        return await self._sign_in(user_id)

    async def _sign_in(self, user_id: UUID) -> TokenPair:
        refresh = new_refresh_token()
        await self.tokens.issue_refresh(user_id, hash_token(refresh), self._refresh_ttl_s)
        return self._pair(user_id, refresh)

    def _pair(self, user_id: UUID, refresh: str) -> TokenPair:
        return TokenPair(self.access.issue(user_id), refresh, self.access.ttl_s, user_id)

    async def _consume(self, token: str, purpose: EmailPurpose) -> UUID:
        if not token_shape_ok(token, EMAIL_TOKEN_PREFIX):
            raise AuthError(_BAD_EMAIL_TOKEN)
        user_id = await self.tokens.consume_email_token(hash_token(token), purpose)
        if user_id is None:
            raise AuthError(_BAD_EMAIL_TOKEN)
        return user_id

    async def _send_token(self, user: User, purpose: EmailPurpose) -> None:
        token = new_email_token()
        ttl_s = self._ttl_s[purpose]
        await self.tokens.create_email_token(user.id, purpose, hash_token(token), ttl_s)
        subject, action, route = _MAILS[purpose]
        await self._mail(
            user.email,
            subject,
            f"{action}, send this token to POST {route} (it works once and expires in "
            f"{_duration(ttl_s)}):\n\n    {token}\n\n"
            "If you did not ask for this, ignore this message.\n",
        )

    async def _mail(self, to: str, subject: str, text: str) -> None:
        try:
            await self.mailer.send(to, subject, text)
        except (OSError, smtplib.SMTPException) as exc:
            # Not the caller's fault, and they can ask again; the operator needs to know.
            log.warning("could not send %r to a user: %s", subject, exc)


_MAILS: Final[dict[EmailPurpose, tuple[str, str, str]]] = {
    "verify": ("Confirm your e-mail address", "To confirm this address", "/v1/auth/verify-email"),
    "magic": ("Your sign-in link", "To sign in", "/v1/auth/magic-link/redeem"),
    "reset": ("Reset your password", "To set a new password", "/v1/auth/password-reset/confirm"),
}


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def open_accounts(settings: Settings, pool: db.Pool, secret_key: str) -> Accounts:
    return Accounts(
        settings,
        UserRepository(pool),
        SignInTokenRepository(pool),
        AccessTokens(secret_key, ttl_s=settings.access_token_minutes * 60),
        Mailer(sender=settings.mail_from, data_dir=settings.data_dir, smtp_url=settings.smtp_url),
        second_factors=SecondFactors(MfaRepository(pool), SecretBox(secret_key)),
        passkeys=Passkeys(PasskeyRepository(pool), public_origin=settings.public_origin),
    )
