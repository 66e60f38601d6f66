"""Errors of the storage layer that are not caused by a client.

They live apart from the modules that raise them so the embedded-service helpers can share
them without import cycles; ``embedded`` and ``services`` re-export them.
"""

from __future__ import annotations

from pathlib import Path

from voicestream.errors import VoiceStreamError

__all__ = ["EmbeddedServiceError", "ServiceConnectionError", "service_failure"]


class EmbeddedServiceError(VoiceStreamError):
    """The private PostgreSQL or redis-server under the data dir could not be set up or run.

    The message says what failed and, when a process would not start, ends with the tail of
    that service's log, because that is where the actual reason is.
    """

    code = "service_unavailable"
    http_status = 503
    ws_close_code = 1013  # try again later


def service_failure(what: str, output: str, tail: str, log_path: Path) -> EmbeddedServiceError:
    """The error for a failed service command: what failed, its output, then its log's tail."""
    parts = [what]
    if output.strip():
        parts.append(output.strip())
    if tail.strip():
        parts.append(f"--- last lines of {log_path} ---\n{tail.strip()}")
    return EmbeddedServiceError("\n".join(parts))


class ServiceConnectionError(VoiceStreamError):
    """A configured database or Redis (``DATABASE_URL`` / ``REDIS_URL``) cannot be reached."""

    code = "service_unavailable"
    http_status = 503
    ws_close_code = 1013
    retryable = True
