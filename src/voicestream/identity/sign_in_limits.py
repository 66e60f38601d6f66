"""Limits on guessing at sign-in: wrong passwords per account, wrong one-time codes per user.

The per-address limit of the sign-in routes (``server/rate_limits.py``) slows one client;
these stop many clients from guessing one account's secret together:

- **Passwords**, per e-mail address: past ``login_max_failures`` wrong passwords within
  ``sign_in_failure_window_seconds``, logins for that address get 429 with ``Retry-After``,
  from any address. The bucket is the address's hash, whether or not an account has it, and
  the refusal comes before the password is looked at, so the answer says nothing about the
  account's existence. Locking out is the price (someone may keep a victim's logins at 429
  by guessing wrong on purpose): magic links and passkeys keep working.
- **One-time codes**, per user: ``totp_max_failures`` wrong codes within the window across
  enrolment, turning TOTP off and the second step of signing in, whatever challenge or
  session they came through. Six digits are a million guesses: without this, each new
  challenge (five attempts) would restart the count.

Every attempt takes one from the bucket before it is checked, in the same atomic GCRA step
as the rest of the rate limits (``store/request_rates.py``), so concurrent guesses cannot
together pass the limit; an attempt that succeeds gives the bucket back whole. Redis away:
not enforced (the runner's fail-open), like every other limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar
from uuid import UUID

from aiohttp import web

from ..config import Settings
from ..errors import Busy
from ..store.request_rates import RateDecision, RequestRates

__all__ = ["RATE_DECISION", "SIGN_IN_LIMITS", "SignInLimits"]

_T = TypeVar("_T")

# The decision whose RateLimit-* (and Retry-After) headers the response carries; set by every
# limit a request meets, the last one wins (``server/rate_limits.py`` writes the headers).
RATE_DECISION: Final = web.RequestKey("voicestream_rate_decision", RateDecision)


class FailOpenRunner(Protocol):
    async def run(self, check: Callable[[], Awaitable[_T]]) -> _T | None: ...


@dataclass(frozen=True, slots=True)
class SignInLimits:
    rates: RequestRates
    settings: Settings
    fail_open: FailOpenRunner

    def password_attempt(
        self, request: web.Request, email: str
    ) -> AbstractAsyncContextManager[None]:
        """Count a password attempt for ``email`` (429 past the limit); a body that does
        not raise (the password was right) clears the count."""
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        return self._attempt(
            request, f"login:{digest}", self.settings.login_max_failures, "wrong passwords"
        )

    def code_attempt(
        self, request: web.Request, user_id: UUID
    ) -> AbstractAsyncContextManager[None]:
        """Count a one-time code attempt of ``user_id``, as ``password_attempt`` does."""
        return self._attempt(
            request, f"totp:{user_id}", self.settings.totp_max_failures, "wrong codes"
        )

    @asynccontextmanager
    async def _attempt(
        self, request: web.Request, bucket: str, max_failures: int, what: str
    ) -> AsyncIterator[None]:
        window_s = self.settings.sign_in_failure_window_seconds
        decision = await self.fail_open.run(
            lambda: self.rates.hit_within(
                bucket, window_s=window_s, count=max_failures, burst=max_failures
            )
        )
        if decision is not None:
            request[RATE_DECISION] = decision
            if not decision.allowed:
                raise Busy(
                    f"too many {what}: at most {max_failures} in {window_s} s; retry in "
                    f"{decision.retry_after_s} s",
                    details={"retry_after_s": decision.retry_after_s},
                )
        yield
        await self.fail_open.run(lambda: self.rates.forget(bucket))


SIGN_IN_LIMITS: Final = web.AppKey("voicestream_sign_in_limits", SignInLimits)
