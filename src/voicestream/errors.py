"""The one error tree of voicestream.

Every error a client can cause maps to a stable ``code``, an HTTP status and a
WebSocket close code, so the HTTP layer and every socket protocol report it the
same way::

    VoiceStreamError                      code             http  ws close
    ├── BadRequest                        bad_request      400   1008
    │   ├── InvalidJSON                   invalid_json     400   1007
    │   ├── ValidationFailed              invalid_request  422   1008
    │   │   └── TranslationUnavailable    translation_unavailable 422 1008 (no translator)
    │   ├── ContentBlocked                content_blocked  400   1008 (moderation refused the text)
    │   │   └── ContentUnderReview        content_under_review 400 1008 (held for a reviewer)
    │   ├── UnknownVoice                  unknown_voice    404*  1008
    │   ├── UnsupportedFormat             unsupported_format 400 1008
    │   ├── InvalidAudio                  invalid_audio    400   1007
    │   ├── TextTooLong / EmptyText       text_too_long / empty_text 400/422  1009/1008
    │   ├── PayloadTooLarge               payload_too_large 413  1009
    │   ├── UnsupportedLanguage           unsupported_language 400 1008
    │   ├── ModelNotInstalled             model_not_installed 400 1008 (e.g. no multilingual STT)
    │   └── RequestTimeout                request_timeout  408   1008 (body or input too slow)
    ├── AuthError                         unauthorized     401   4401 (after 1008 rules)
    │   └── Forbidden                     forbidden        403   4403
    │       ├── MfaRequired               mfa_required     403   4403 (HIPAA: no second factor)
    │       └── IpNotAllowed              ip_not_allowed   403   4403 (not on the allow-list)
    ├── NotFound                          not_found        404   1008
    │   └── LinkExpired                   link_expired     410   1008 (a signed URL past its time)
    ├── Conflict                          conflict         409   4409 (e.g. a session in use)
    │   └── BillingNotConfigured          billing_not_configured 409 4409 (no Stripe key)
    ├── QuotaExceeded                     quota_exceeded   402   4402 (a monthly quota used up)
    │   ├── InsufficientCredits           insufficient_credits 402 4402 (credits ledger)
    │   └── PaymentRequired               payment_past_due 402 4402 (an unpaid invoice)
    ├── ProtocolError                     protocol_error   400   1002 (sans-I/O codecs)
    ├── Overloaded                        overloaded       503   1013
    │   ├── Busy                          rate_limited     429   1013 (+ Retry-After)
    │   ├── ServiceUnavailable            service_unavailable 503 1013 (database/Redis down)
    │   │   └── DependencyUnavailable     dependency_unavailable 503 1013 (a circuit open)
    │   └── ClientTooSlow                 client_too_slow  503   1013 (stopped reading)
    └── EngineError(retryable)            engine_error     502   1011
        └── EngineUnavailable             engine_unavailable 503 1013
            └── ModelFileError            model_file_error 503 1013 (a broken model file, named)

    * 400 where the voice is a body field rather than a path segment.

Provider and engine errors carry ``retryable`` so callers know whether trying
again can help (the 4xx-except-408/429 rule for remote providers).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "BadRequest",
    "BillingNotConfigured",
    "Busy",
    "ClientTooSlow",
    "Conflict",
    "ContentBlocked",
    "ContentUnderReview",
    "DependencyUnavailable",
    "EmptyText",
    "EngineError",
    "EngineUnavailable",
    "Forbidden",
    "InsufficientCredits",
    "InvalidAudio",
    "InvalidJSON",
    "IpNotAllowed",
    "LinkExpired",
    "MfaRequired",
    "ModelFileError",
    "ModelNotInstalled",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PaymentRequired",
    "ProtocolError",
    "QuotaExceeded",
    "RequestTimeout",
    "ServiceUnavailable",
    "TextTooLong",
    "TranslationUnavailable",
    "UnknownVoice",
    "UnsupportedFormat",
    "UnsupportedLanguage",
    "ValidationFailed",
    "VoiceStreamError",
]


class VoiceStreamError(Exception):
    """Root of every error voicestream raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    ws_close_code: ClassVar[int] = 1011
    retryable: bool = False
    # Seconds a client should wait before trying again (HTTP ``Retry-After``); None: no hint.
    retry_after_s: int | None = None

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: ``{"error": {"code", "message", "details"}}``."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(VoiceStreamError):
    code = "bad_request"
    http_status = 400
    ws_close_code = 1008  # policy violation: the peer sent something we will not accept


class InvalidJSON(BadRequest):
    code = "invalid_json"
    ws_close_code = 1007  # invalid frame payload data


class ValidationFailed(BadRequest):
    code = "invalid_request"
    http_status = 422


class TranslationUnavailable(ValidationFailed):
    """A dub into another language with no translator configured and no translation given
    (a CSV or subtitles); same-language re-voicing needs neither."""

    code = "translation_unavailable"


class ContentBlocked(BadRequest):
    """Content moderation refused the text (a block list or the moderation endpoint). The
    message and details name the category and what matched it, never the text itself, so
    logs of the refusal carry none of what was blocked."""

    code = "content_blocked"


class ContentUnderReview(ContentBlocked):
    """The text is borderline: it waits in the workspace's review queue and is refused until
    a reviewer approves it (then the same text passes)."""

    code = "content_under_review"


class UnknownVoice(BadRequest):
    code = "unknown_voice"


class UnsupportedFormat(BadRequest):
    code = "unsupported_format"


class InvalidAudio(BadRequest):
    code = "invalid_audio"
    ws_close_code = 1007


class EmptyText(BadRequest):
    code = "empty_text"
    http_status = 422


class TextTooLong(BadRequest):
    code = "text_too_long"
    ws_close_code = 1009  # message too big


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"
    http_status = 413
    ws_close_code = 1009


class UnsupportedLanguage(BadRequest):
    """The installed engine does not speak or understand the language asked for."""

    code = "unsupported_language"


class ModelNotInstalled(BadRequest):
    """The request needs a model this server does not have (say, a translation without a
    multilingual Whisper model); the message says how an operator adds one."""

    code = "model_not_installed"


class RequestTimeout(BadRequest):
    """The client took too long to send what it had started (a request body, a stream)."""

    code = "request_timeout"
    http_status = 408


class AuthError(VoiceStreamError):
    code = "unauthorized"
    http_status = 401
    ws_close_code = 4401  # application range, mirrors HTTP 401


class Forbidden(AuthError):
    code = "forbidden"
    http_status = 403
    ws_close_code = 4403


class MfaRequired(Forbidden):
    """The workspace (its HIPAA mode) requires every member to sign in with a second factor,
    and this one has none yet: set one up under ``/v1/auth/mfa``."""

    code = "mfa_required"


class IpNotAllowed(Forbidden):
    """The workspace's IP allow-list does not include the caller's address."""

    code = "ip_not_allowed"


class NotFound(VoiceStreamError):
    code = "not_found"
    http_status = 404
    ws_close_code = 1008


class LinkExpired(NotFound):
    """A signed URL (a file download or upload) whose time is up: ask for a new one."""

    code = "link_expired"
    http_status = 410


class Conflict(VoiceStreamError):
    """The request is fine but clashes with what is going on (a conversation already live)."""

    code = "conflict"
    http_status = 409
    ws_close_code = 4409  # application range, mirrors HTTP 409


class BillingNotConfigured(Conflict):
    """A billing route on a server with no Stripe account configured: every workspace is on
    the free plan and there is nothing to subscribe to or pay."""

    code = "billing_not_configured"


class QuotaExceeded(VoiceStreamError):
    """The workspace has used up a monthly quota (characters, audio seconds, conversation
    minutes). 402 rather than 429: waiting a moment does not help, only the next period or a
    larger quota does, so clients that retry 429s must not retry this."""

    code = "quota_exceeded"
    http_status = 402
    ws_close_code = 4402  # application range, mirrors HTTP 402


class InsufficientCredits(QuotaExceeded):
    """The workspace's available credits cannot cover the work (``billing/ledger.py``). A
    kind of QuotaExceeded, so every socket reports it as it reports a used-up quota; only a
    grant helps, not waiting."""

    code = "insufficient_credits"


class PaymentRequired(QuotaExceeded):
    """The workspace's subscription is past due (an invoice's payment failed): reads keep
    working, new paid work is refused until the invoice is paid (``billing/ledger.py``)."""

    code = "payment_past_due"


class ProtocolError(VoiceStreamError):
    code = "protocol_error"
    http_status = 400
    ws_close_code = 1002


class Overloaded(VoiceStreamError):
    code = "overloaded"
    http_status = 503
    ws_close_code = 1013  # try again later
    retryable = True


class ServiceUnavailable(Overloaded):
    """A backing service (PostgreSQL, Redis) cannot be reached right now.

    Answered as 503 with ``Retry-After`` over HTTP and close 1013 on sockets: the request was
    fine, and the same request succeeds once the service is back.
    """

    code = "service_unavailable"
    retry_after_s = 2


class DependencyUnavailable(ServiceUnavailable):
    """An outside service (Stripe, an LLM, a translator, a moderation endpoint) failed often
    enough that its circuit is open: refused at once, without calling it, for ``retry_after_s``
    (the rest of the open period), so an outage costs callers no timeouts and the service
    no retry storm."""

    code = "dependency_unavailable"

    def __init__(
        self,
        dependency: str,
        retry_after_s: int,
        *,
        message: str | None = None,
    ) -> None:
        super().__init__(
            message or f"{dependency} is unavailable; retry in {retry_after_s} s",
            details={"dependency": dependency, "retry_after_s": retry_after_s},
        )
        self.dependency = dependency
        self.retry_after_s = retry_after_s


class Busy(Overloaded):
    """Every slot of a bounded resource (say, the STT decoders) is taken. Refused at once
    rather than queued, so a burst gets a quick answer instead of a pile of waiting work."""

    code = "rate_limited"
    http_status = 429
    retry_after_s = 1


class ClientTooSlow(Overloaded):
    """A socket's peer does not take what we send (it stopped reading, or reads slower than
    real time): it is closed rather than buffered for without bound or silently skipped."""

    code = "client_too_slow"


class EngineError(VoiceStreamError):
    code = "engine_error"
    http_status = 502
    ws_close_code = 1011

    def __init__(
        self, message: str, *, retryable: bool = False, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retryable = retryable


class EngineUnavailable(EngineError):
    code = "engine_unavailable"
    http_status = 503
    ws_close_code = 1013


class ModelFileError(EngineUnavailable):
    """A model file is missing, truncated, malformed or does not match its config; the
    message names the file, so an operator knows which one to replace."""

    code = "model_file_error"
