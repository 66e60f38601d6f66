"""asyncpg pools and connections, and the asyncpg names the rest of ``store`` uses.

This is the only module of ``store`` that imports asyncpg. asyncpg ships neither type stubs
nor a py.typed marker (pyproject tells mypy to treat it as Any), so its names are re-exported
here as aliases: should stubs be added later, only this file needs to change.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeAlias, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg

from voicestream.errors import ServiceUnavailable
from voicestream.store._errors import connection_failed, unavailable

__all__ = [
    "Connection",
    "Pool",
    "PostgresError",
    "Record",
    "UniqueViolationError",
    "close_pool",
    "connect",
    "create_pool",
    "is_pool",
    "postgres_outage",
]

Pool: TypeAlias = asyncpg.Pool
Connection: TypeAlias = asyncpg.Connection
Record: TypeAlias = asyncpg.Record
PostgresError: type[Exception] = asyncpg.PostgresError
UniqueViolationError: type[Exception] = asyncpg.UniqueViolationError

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

# Errors that say the server (or the way to it) is gone, not that the statement was wrong:
# SQLSTATE class 08, "cannot connect now" while it starts or recovers, and the terminations
# PostgreSQL sends its sessions when it is shut down or a sibling backend crashed.
_OUTAGES: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


def postgres_outage(exc: BaseException, *, os_errors: bool = True) -> ServiceUnavailable | None:
    """``exc``, raised by a database call, as ServiceUnavailable when the server is down.

    ``os_errors=False`` for an exception of unknown origin: a bare OSError or TimeoutError
    then proves nothing about the database.
    """
    if isinstance(exc, ServiceUnavailable):
        return exc
    closed = isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)
    if closed or isinstance(exc, _OUTAGES) or (os_errors and connection_failed(exc)):
        return unavailable("the database")
    return None


def _outages_unavailable(
    call: Callable[_P, Awaitable[_T]],
) -> Callable[_P, Awaitable[_T]]:
    @functools.wraps(call)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await call(*args, **kwargs)
        except asyncpg.InternalClientError as exc:
            # The connection was left mid-protocol ("another operation is in progress"): a call
            # on it was cancelled while the server died. It can never be used again; drop it so
            # the pool opens a fresh one, and let the caller retry.
            if args and isinstance(args[0], asyncpg.Connection):
                args[0].terminate()
            raise unavailable("the database") from exc
        except Exception as exc:
            if (err := postgres_outage(exc)) is not None and err is not exc:
                raise err from exc
            raise

    return wrapper


class _Connection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped (Any)
    """A connection whose calls report a lost server as ServiceUnavailable.

    The repositories then need no outage handling of their own, and every caller, HTTP
    route or socket, answers 503 / close 1013 instead of failing on a driver exception.
    """

    execute = _outages_unavailable(asyncpg.Connection.execute)
    executemany = _outages_unavailable(asyncpg.Connection.executemany)
    fetch = _outages_unavailable(asyncpg.Connection.fetch)
    fetchval = _outages_unavailable(asyncpg.Connection.fetchval)
    fetchrow = _outages_unavailable(asyncpg.Connection.fetchrow)
    fetchmany = _outages_unavailable(asyncpg.Connection.fetchmany)

    # asyncpg's own signature, which the pool calls: the name is not ours to choose.
    async def reset(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Reset for the pool's next user; a connection that broke is dropped instead.

        asyncpg raises from ``release`` when the reset fails, which would replace the
        caller's own outcome (an outage error, or even a result that did arrive) with an
        internal one such as "another operation is in progress".
        """
        try:
            await super().reset(timeout=timeout)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                OSError, TimeoutError) as exc:  # fmt: skip
            log.debug("dropping a broken database connection: %s", exc)
            self.terminate()  # the pool opens a new one on its next acquire


class _QuietOutageFilter(logging.Filter):
    """One line, not a traceback per retry, while the pool cannot reconnect to a server that is
    down: asyncpg logs each failed attempt to restore its minimum size with ``exc_info``."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and postgres_outage(exc) is not None:
            record.msg = f"{record.msg} ({exc})"
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_QuietOutageFilter())

# Replaces asyncpg.connect inside the pool, so a refused or failed connect while the server
# is down or restarting is ServiceUnavailable as well; the pool retries on the next acquire.
_connect_or_unavailable = _outages_unavailable(asyncpg.connect)


def _password_override(url: str | None, params: dict[str, Any]) -> str | None:
    """Blocking. ``""`` when no password source exists at all, else None (asyncpg decides).

    Without a password asyncpg looks for ~/.pgpass on every new connection, a file system
    call on the event loop each time the pool grows. When neither the URL, the arguments,
    PGPASSWORD nor a password file can supply one, an explicit empty password skips that
    lookup and means the same thing: connect without a password.
    """
    if params.get("password") is not None or os.environ.get("PGPASSWORD"):
        return None
    if url is not None:
        parts = urlsplit(url)
        if parts.password or "password" in parse_qs(parts.query):
            return None
    passfile = os.environ.get("PGPASSFILE")
    try:
        path = Path(passfile) if passfile else Path.home() / ".pgpass"
    except RuntimeError:  # no home directory
        return ""
    return None if path.exists() else ""


def _server_settings(statement_timeout_s: float) -> dict[str, str]:
    return {
        "application_name": "voicestream",
        # Server-side limit, so a runaway query is cancelled by PostgreSQL itself rather
        # than merely abandoned by the client.
        "statement_timeout": str(int(statement_timeout_s * 1000)),
        # A connection stuck in an open transaction holds locks; do not let it linger.
        "idle_in_transaction_session_timeout": "60000",
    }


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    statement_timeout_s: float = 30.0,
    command_timeout_s: float = 35.0,
    connect_timeout_s: float = 10.0,
) -> Pool:
    """Open a connection pool.

    ``command_timeout_s`` is the client-side limit per call; it is a little longer than the
    statement timeout so that the server's cancellation (a clean error) normally wins.
    """
    password = await asyncio.to_thread(_password_override, url, {})
    return await asyncpg.create_pool(
        dsn=url,
        password=password,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout_s,
        timeout=connect_timeout_s,
        server_settings=_server_settings(statement_timeout_s),
        connect=_connect_or_unavailable,
        connection_class=_Connection,
    )


async def connect(
    url: str | None = None, *, connect_timeout_s: float = 10.0, **params: Any
) -> Connection:
    """One connection, by URL or by asyncpg keyword parameters (host, port, user, database)."""
    password = await asyncio.to_thread(_password_override, url, params)
    if password is not None:
        params["password"] = password
    return await asyncpg.connect(dsn=url, timeout=connect_timeout_s, **params)


async def close_pool(pool: Pool, grace_s: float = 10.0) -> None:
    """Close gracefully, but never hang shutdown on a connection that will not give up."""
    try:
        await asyncio.wait_for(pool.close(), grace_s)
    except TimeoutError:
        pool.terminate()


def is_pool(obj: object) -> bool:
    return isinstance(obj, asyncpg.Pool)
