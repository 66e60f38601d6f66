"""Open the database and Redis for a set of settings: configured ones, else embedded ones.

``DATABASE_URL`` and ``REDIS_URL`` are honoured independently: whichever is unset is
served by the private instance under ``settings.data_dir`` (see ``embedded``), leased for
the lifetime of the context and released on exit. The server and the CLI both come through
here, so they always agree on which services a data dir means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from voicestream.config import Settings
from voicestream.errors import ServiceUnavailable
from voicestream.store import db
from voicestream.store._errors import ServiceConnectionError
from voicestream.store.embedded import EmbeddedServices, ServiceURLs
from voicestream.store.migrate import migrate
from voicestream.store.redis_client import create_redis, redis_outage
from voicestream.store.supervisor import supervised
from voicestream.store.watchdog import start_watchdog, stop_watchdog

__all__ = [
    "Database",
    "ServiceConnectionError",
    "Services",
    "open_database",
    "open_services",
    "outage_error",
    "redact_url",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    pool: db.Pool  # schema migrated
    redis: Redis
    urls: ServiceURLs


@dataclass(frozen=True)
class Database:
    pool: db.Pool  # schema migrated
    url: str


def outage_error(exc: BaseException) -> ServiceUnavailable | None:
    """``exc`` as ServiceUnavailable if it says PostgreSQL or Redis is unreachable, else None.

    The repositories and the Redis client already raise ServiceUnavailable; this catches what
    slips past them (transaction blocks, pipelines) at the HTTP and socket edges, where the
    origin is unknown: only the drivers' own connection errors count there. A library that
    wraps the driver's error (taskiq's ``SendTaskError``) is judged by what caused it.
    """
    seen: BaseException | None = exc
    while seen is not None:
        found = db.postgres_outage(seen, os_errors=False) or redis_outage(seen, os_errors=False)
        if found is not None:
            return found
        seen = seen.__cause__
    return None


def redact_url(url: str) -> str:
    """``url`` with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


async def _lease_embedded(
    stack: contextlib.AsyncExitStack, settings: Settings, *, postgres: bool, redis: bool
) -> tuple[str | None, str | None]:
    if not (postgres or redis):
        return None, None
    embedded = EmbeddedServices(settings.data_dir)
    urls = await embedded.acquire_only(postgres=postgres, redis=redis)
    stack.push_async_callback(embedded.release)
    # If this process is killed, the watchdog stops the services it leaves behind.
    try:
        watchdog = await asyncio.to_thread(start_watchdog, embedded.data_dir)
    except OSError as exc:  # not fatal: only a kill -9 of this process would leak them
        log.warning("no watchdog for the embedded services: %s", exc)
    else:
        stack.push_async_callback(asyncio.to_thread, stop_watchdog, watchdog)
    # Entered after the lease, so it stops first: nothing restarts what release stops.
    await stack.enter_async_context(supervised(embedded))
    return urls


async def _open_pool(
    stack: contextlib.AsyncExitStack,
    url: str,
    *,
    migrate_schema: bool,
    min_size: int,
    max_size: int,
) -> db.Pool:
    try:
        pool = await db.create_pool(url, min_size=min_size, max_size=max_size)
    except (OSError, TimeoutError, db.PostgresError, ServiceUnavailable) as exc:
        raise ServiceConnectionError(
            f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}"
        ) from exc
    stack.push_async_callback(db.close_pool, pool)
    if migrate_schema:
        applied = await migrate(pool)
        if applied:
            log.info("database schema migrated: %s", ", ".join(applied))
    return pool


async def _open_redis(stack: contextlib.AsyncExitStack, url: str) -> Redis:
    client = create_redis(url)
    stack.push_async_callback(client.aclose)
    try:
        # Connecting is lazy; ping now so a wrong REDIS_URL fails at start, not mid-request.
        await client.ping()
    except (RedisError, OSError, ServiceUnavailable) as exc:
        raise ServiceConnectionError(
            f"cannot connect to Redis at {redact_url(url)}: {exc}"
        ) from exc
    return client


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    migrate_schema: bool = True,
    pool_min_size: int = 1,
    pool_max_size: int = 10,
) -> AsyncIterator[Services]:
    """A migrated PostgreSQL pool and a Redis client, closed (and leases released) on exit.

    Raises:
        EmbeddedServiceError: an embedded service could not be started.
        ServiceConnectionError: a configured or embedded service cannot be reached.
    """
    async with contextlib.AsyncExitStack() as stack:
        embedded_db, embedded_redis = await _lease_embedded(
            stack,
            settings,
            postgres=settings.database_url is None,
            redis=settings.redis_url is None,
        )
        database_url = settings.database_url or embedded_db
        redis_url = settings.redis_url or embedded_redis
        assert database_url is not None and redis_url is not None  # one or the other is set
        pool = await _open_pool(
            stack,
            database_url,
            migrate_schema=migrate_schema,
            min_size=pool_min_size,
            max_size=pool_max_size,
        )
        client = await _open_redis(stack, redis_url)
        yield Services(pool=pool, redis=client, urls=ServiceURLs(database_url, redis_url))


@contextlib.asynccontextmanager
async def open_database(
    settings: Settings,
    *,
    migrate_schema: bool = True,
    pool_min_size: int = 1,
    pool_max_size: int = 4,
) -> AsyncIterator[Database]:
    """Like ``open_services`` for PostgreSQL alone (CLI commands need no Redis)."""
    async with contextlib.AsyncExitStack() as stack:
        embedded_db, _ = await _lease_embedded(
            stack, settings, postgres=settings.database_url is None, redis=False
        )
        url = settings.database_url or embedded_db
        assert url is not None  # one or the other is set
        pool = await _open_pool(
            stack,
            url,
            migrate_schema=migrate_schema,
            min_size=pool_min_size,
            max_size=pool_max_size,
        )
        yield Database(pool=pool, url=url)
