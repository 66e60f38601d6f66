"""asyncpg pools and connections, and the asyncpg names the rest of ``store`` uses.

This is the only module of ``store`` that imports asyncpg. asyncpg ships neither type stubs
nor a py.typed marker (pyproject tells mypy to treat it as Any), so its names are re-exported
here as aliases: should stubs be added later, only this file needs to change.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

import asyncpg

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
]

Pool: TypeAlias = asyncpg.Pool
Connection: TypeAlias = asyncpg.Connection
Record: TypeAlias = asyncpg.Record
PostgresError: type[Exception] = asyncpg.PostgresError
UniqueViolationError: type[Exception] = asyncpg.UniqueViolationError


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
