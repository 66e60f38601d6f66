"""Errors of the storage layer that are not caused by a client.

They live apart from the modules that raise them so the embedded-service helpers can share
them without import cycles; ``embedded`` and ``services`` re-export them.
"""

from __future__ import annotations

import errno
from pathlib import Path

from voicestream.errors import ServiceUnavailable, VoiceStreamError

__all__ = [
    "EmbeddedServiceError",
    "ServiceConnectionError",
    "connection_failed",
    "service_failure",
    "unavailable",
]


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


class ServiceConnectionError(ServiceUnavailable):
    """A configured database or Redis (``DATABASE_URL`` / ``REDIS_URL``) cannot be reached."""


_CONNECT_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.EPIPE,
    }
)


def connection_failed(exc: BaseException) -> bool:
    """Whether an OS-level error from a driver call means the server could not be reached.

    Only meaningful for exceptions raised by a database or Redis call: there a bare OSError
    or TimeoutError is the connection, while elsewhere it could mean anything.
    """
    if isinstance(exc, TimeoutError):
        return True
    if not isinstance(exc, OSError):
        return False
    # asyncio joins the failures of several addresses into one OSError without an errno.
    return exc.errno in _CONNECT_ERRNOS or (exc.errno is None and "Connect call failed" in str(exc))


def unavailable(service: str) -> ServiceUnavailable:
    """The client-facing error for a service that is down; the cause is chained, not shown."""
    return ServiceUnavailable(
        f"{service} is temporarily unavailable; try again shortly",
        details={"service": service},
    )
