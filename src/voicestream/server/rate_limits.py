"""The limits middleware: request rates per caller, and stream admission per workspace.

It runs right after authentication. The sign-in routes (``SIGN_IN_PATHS``: login, sign-up,
e-mail links, refresh, the second step, passkey and provider sign-in) carry no principal;
each client address gets one GCRA bucket for all of them (``auth_rate_limit_*``), answered
like the per-caller limit below. Enrolling a second factor (``ENROLMENT_PATHS``: TOTP's
start, passkey registration) carries no principal either, and each request stores something
(a sealed secret, a challenge): the same limits, in a bucket per user (the access token's
subject, checked here by signature alone); without a valid token the handler refuses before
any work, so those are not counted.
The per-account limits on guessing (wrong passwords per e-mail, wrong codes per user) are
the handlers' (``identity/sign_in_limits.py``). Then, for every request that carries a
principal:

1. **Rate.** One GCRA bucket per caller in Redis (``store/request_rates.py``): the signed-in
   user when there is one, else the API key. Past the burst: 429 ``rate_limited`` with
   ``Retry-After``. Every answer to a counted request carries ``RateLimit-Limit``,
   ``RateLimit-Remaining`` and ``RateLimit-Reset`` (refusals, successes, other errors, and
   a socket's upgrade response alike), so clients can pace themselves before they are
   refused. A socket is counted, and refused, at its upgrade request.
2. **Streams.** A streaming request (a socket's upgrade, streaming TTS or STT over HTTP) is
   refused before its handler runs when its workspace has used up the quota of what it would
   do (402 ``quota_exceeded``) or has ``max_streams_per_workspace`` streams open (429); it
   then holds a slot until the handler returns, which for a socket is when it closes.
   Conversations (and calls) are admitted in ``open_conversation`` instead, where their
   workspace (the agent's) is known even without a key, and where a WebRTC call's slot can
   outlive the signalling request.

Redis down: the limits are not enforced (fail-open) and a warning is logged, once per outage.
Rejecting every request instead would turn an outage of a limiter into an outage of the
whole API, synthesis and transcription included, which do not need Redis; the per-process
bounds still protect the server meanwhile (see ``stream_admission.FailOpen``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import AuthError, Busy
from ..identity.audit_trail import client_ip
from ..identity.quotas import require_headroom
from ..identity.sign_in_limits import RATE_DECISION, SIGN_IN_LIMITS, SignInLimits
from ..rest.auth import ACCOUNTS
from ..rest.resources import REDIS, SETTINGS, USAGE
from ..store.keys import Principal
from ..store.request_rates import RequestRates
from ..store.usage import UsageKind
from ..transports.context import PRINCIPAL
from ..transports.stream_admission import STREAM_SLOT, FailOpen, stream_leases, stream_slot

__all__ = [
    "ENROLMENT_PATHS",
    "SIGN_IN_PATHS",
    "STREAM_ROUTES",
    "add_limits",
    "rate_limit_middleware",
]

# POSTs that anyone may send to get a session: what guessing and sign-up floods go through.
# Second-factor enrolment is counted per user (``ENROLMENT_PATHS``); logout (a refresh
# token in the body, nothing to guess) and the other routes of a signed-in person are not.
SIGN_IN_PATHS: Final = frozenset(
    "/v1/auth/" + path
    for path in (
        "signup",
        "verify-email",
        "login",
        "refresh",
        "magic-link",
        "magic-link/redeem",
        "password-reset",
        "password-reset/confirm",
        "mfa/verify",
        "passkeys/login/options",
        "passkeys/login/verify",
    )
)
# POSTs of a signed-in person that store a new secret or challenge each time.
ENROLMENT_PATHS: Final = frozenset(
    "/v1/auth/" + path
    for path in ("mfa/totp", "passkeys/register/options", "passkeys/register/verify")
)
# Sign-in with Google, GitHub, Apple: the start and the provider's callback.
_SIGN_IN_PREFIXES: Final = ("/v1/auth/oauth/",)

_TTS: Final[tuple[UsageKind, ...]] = ("tts_characters",)
_STT: Final[tuple[UsageKind, ...]] = ("stt_seconds",)
# Streaming routes by their route pattern, with the kinds of work they do. Conversation
# routes are absent on purpose (see the module doc).
STREAM_ROUTES: Final[dict[str, tuple[UsageKind, ...]]] = {
    "/v1/tts": _TTS,
    "/v1/tts/stream": _TTS,
    "/v1/stt": _STT,
    "/v1/stt/stream": _STT,
    "/openai/v1/audio/speech": _TTS,
    "/openai/v1/audio/transcriptions": _STT,
    "/openai/v1/audio/translations": _STT,
    "/openai/v1/realtime": ("stt_seconds", "tts_characters"),
    "/elevenlabs/v1/text-to-speech/{voice_id}": _TTS,
    "/elevenlabs/v1/text-to-speech/{voice_id}/stream": _TTS,
    "/elevenlabs/v1/text-to-speech/{voice_id}/with-timestamps": _TTS,
    "/elevenlabs/v1/text-to-speech/{voice_id}/stream/with-timestamps": _TTS,
    "/elevenlabs/v1/text-to-speech/{voice_id}/stream-input": _TTS,
    "/elevenlabs/v1/text-to-speech/{voice_id}/multi-stream-input": _TTS,
    "/elevenlabs/v1/text-to-dialogue": _TTS,
    "/elevenlabs/v1/text-to-dialogue/stream": _TTS,
    "/elevenlabs/v1/text-to-dialogue/with-timestamps": _TTS,
    "/elevenlabs/v1/text-to-dialogue/stream/with-timestamps": _TTS,
    "/elevenlabs/v1/speech-to-text": _STT,
    "/elevenlabs/v1/speech-to-text/realtime": _STT,
}


@dataclass
class _Rates:
    rates: RequestRates
    fail_open: FailOpen


_RATES: Final = web.AppKey("voicestream_request_rates", _Rates)


def add_limits(app: web.Application) -> None:
    """Open what the middleware needs; call after the runtime's cleanup context."""
    app.cleanup_ctx.append(_open_rates)
    app.cleanup_ctx.append(stream_leases)
    app.on_response_prepare.append(_rate_headers)


async def _open_rates(app: web.Application) -> AsyncIterator[None]:
    rt = app
    rates = RequestRates(rt[REDIS])
    app[_RATES] = _Rates(rates, FailOpen("request rate limits"))
    app[SIGN_IN_LIMITS] = SignInLimits(rates, rt[SETTINGS], FailOpen("sign-in failure limits"))
    yield


def _caller(principal: Principal) -> str:
    # A person is one caller whichever workspace or session they act through.
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    return f"key:{principal.key_id}"


def _stream_kinds(request: web.Request) -> tuple[UsageKind, ...] | None:
    """The kinds of work of a streaming request; None for any other request."""
    resource = request.match_info.route.resource
    kinds = STREAM_ROUTES.get(resource.canonical) if resource is not None else None
    if kinds is None:
        return None
    if request.method == "POST":
        return kinds
    if request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket":
        return kinds
    return None


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    principal = request.get(PRINCIPAL)
    rates = request.config_dict.get(_RATES)
    if rates is None:
        return await handler(request)
    if principal is None:
        if _is_sign_in(request):
            await _limit_sign_in(request, rates, None)
        elif request.method == "POST" and request.path in ENROLMENT_PATHS:
            if (user_id := _session_user(request)) is not None:
                await _limit_sign_in(request, rates, user_id)
        return await handler(request)
    settings = request.app[SETTINGS]
    decision = await rates.fail_open.run(
        lambda: rates.rates.hit(
            _caller(principal),
            per_minute=settings.rate_limit_requests_per_minute,
            burst=settings.rate_limit_burst,
        )
    )
    if decision is not None:
        request[RATE_DECISION] = decision
        if not decision.allowed:
            raise Busy(
                f"too many requests: at most {settings.rate_limit_requests_per_minute} a "
                f"minute, {settings.rate_limit_burst} at once; retry in "
                f"{decision.retry_after_s} s",
                details={"retry_after_s": decision.retry_after_s},
            )
    kinds = _stream_kinds(request)
    if kinds is None:
        return await handler(request)
    rt = request.app
    for kind in kinds:
        # The principal, not just its workspace: its seat's own quota counts too.
        await require_headroom(rt[USAGE], rt[SETTINGS], principal, kind)
    async with stream_slot(request.app, principal.workspace_id):
        request[STREAM_SLOT] = True
        return await handler(request)


def _is_sign_in(request: web.Request) -> bool:
    path = request.path
    if path.startswith(_SIGN_IN_PREFIXES):
        return True
    return request.method == "POST" and path in SIGN_IN_PATHS


def _session_user(request: web.Request) -> str | None:
    """The user id an access token in the request speaks for, by its signature alone (the
    handler then checks the account); None without a valid one."""
    header = request.headers.get("Authorization", "")
    accounts = request.config_dict.get(ACCOUNTS)
    if accounts is None or not header.lower().startswith("bearer "):
        return None
    try:
        return str(accounts.access.verify(header[7:].strip()).user_id)
    except AuthError:
        return None


async def _limit_sign_in(request: web.Request, rates: _Rates, user_id: str | None) -> None:
    """The sign-in limits: per ``user_id`` when given, else per client address."""
    settings = request.config_dict[SETTINGS]
    if user_id is not None:
        bucket, what = f"sign-in-user:{user_id}", "second-factor enrolments for this user"
    else:
        address = client_ip(request, trust_forwarded_headers=settings.trust_forwarded_headers)
        bucket, what = f"sign-in-ip:{address}", "sign-in requests from this address"
    per_minute, burst = settings.auth_rate_limit_per_minute, settings.auth_rate_limit_burst
    decision = await rates.fail_open.run(
        lambda: rates.rates.hit(bucket, per_minute=per_minute, burst=burst)
    )
    if decision is None:
        return
    request[RATE_DECISION] = decision
    if not decision.allowed:
        raise Busy(
            f"too many {what}: at most {per_minute} a minute, "
            f"{burst} at once; retry in {decision.retry_after_s} s",
            details={"retry_after_s": decision.retry_after_s},
        )


async def _rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    decision = request.get(RATE_DECISION)
    if decision is not None:
        response.headers.update(decision.headers())
