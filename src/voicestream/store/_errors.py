"""Errors of the storage layer that are not caused by a client.

They live apart from the modules that raise them so the embedded-service helpers can share
them without import cycles; ``embedded`` and ``services`` re-export them.
"""

from __future__ import annotations

from voicestream.errors import VoiceStreamError

__all__ = ["EmbeddedServiceError", "ServiceConnectionError"]


class EmbeddedServiceError(VoiceStreamError):
    """The private PostgreSQL or redis-server under the data dir could not be set up or run.

    The message says what failed and, when a process would not start, ends with the tail of
    that service's log, because that is where the actual reason is.
    """

    code = "service_unavailable"
    http_status = 503
    ws_close_code = 1013  # try again later


class ServiceConnectionError(VoiceStreamError):
    """A configured database or Redis (``DATABASE_URL`` / ``REDIS_URL``) cannot be reached."""

    code = "service_unavailable"
    http_status = 503
    ws_close_code = 1013
    retryable = True
