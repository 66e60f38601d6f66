"""Session fixtures: real embedded PostgreSQL and Redis processes, and a migrated pool.

Import them in ``tests/conftest.py``::

    from fixtures_services import db_pool, embedded_services, redis_client  # noqa: F401

Everything in the session shares one database: tests isolate themselves by using their own
workspace names (see ``unique_name``) rather than by truncating tables.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest_asyncio
from redis.asyncio import Redis

from voicestream.store import db
from voicestream.store.embedded import EmbeddedServices, ServiceURLs
from voicestream.store.migrate import migrate
from voicestream.store.redis_client import create_redis

__all__ = [
    "CliResult",
    "cli_env",
    "db_pool",
    "embedded_services",
    "make_data_dir",
    "own_database",
    "redis_client",
    "run_cli",
    "unique_name",
]

# The installed console script, as a user runs it; ``-m`` where it is not installed.
_SCRIPT = Path(sys.executable).with_name("voicestream")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "voicestream"]


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any voicestream settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VOICESTREAM_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """Run ``voicestream ARGS`` in a child process without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else cli_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


def make_data_dir(prefix: str = "voicestream-test-") -> Path:
    """A fresh data dir that the ``postgres`` account can reach when the tests run as root.

    Not pytest's ``tmp_path``: its base directory is mode 0700, which PostgreSQL (running as
    ``postgres``, never as root) cannot enter. The system temp dir is world-searchable.
    """
    return Path(tempfile.mkdtemp(prefix=prefix))


def unique_name(prefix: str) -> str:
    """A workspace name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class OwnDatabase:
    """A migrated database of one test's own, in the session cluster."""

    url: str  # as the application connects
    pool: db.Pool
    admin: db.Connection  # the cluster's superuser, on this database


@asynccontextmanager
async def own_database(services: ServiceURLs) -> AsyncIterator[OwnDatabase]:
    """For tests that need a table to themselves (counting, or breaking, what is in it);
    dropped afterwards."""
    port = urlsplit(services.database_url).port
    name = f"own_{uuid.uuid4().hex[:12]}"
    # The bootstrap superuser, trusted on loopback in the embedded cluster.
    root = await db.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    try:
        await root.execute(f"CREATE DATABASE {name} OWNER voicestream")
        url = f"postgresql://voicestream@127.0.0.1:{port}/{name}?sslmode=disable"
        pool = await db.create_pool(url, max_size=10)
        try:
            admin = await db.connect(host="127.0.0.1", port=port, user="postgres", database=name)
            try:
                await migrate(pool)
                yield OwnDatabase(url, pool, admin)
            finally:
                await admin.close()
        finally:
            await db.close_pool(pool)
            await root.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await root.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def embedded_services() -> AsyncIterator[ServiceURLs]:
    """URLs of a private PostgreSQL and redis-server for the whole session."""
    data_dir = await asyncio.to_thread(make_data_dir)
    services = EmbeddedServices(data_dir)
    try:
        urls = await services.acquire()
        yield urls
    finally:
        await services.release()
        if not os.environ.get("VOICESTREAM_KEEP_TEST_DATA"):
            await asyncio.to_thread(shutil.rmtree, data_dir, True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db_pool(embedded_services: ServiceURLs) -> AsyncIterator[db.Pool]:
    """A pool on the session database, schema migrated."""
    pool = await db.create_pool(embedded_services.database_url, max_size=10)
    try:
        await migrate(pool)
        yield pool
    finally:
        await db.close_pool(pool)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def redis_client(embedded_services: ServiceURLs) -> AsyncIterator[Redis]:
    """A client on the session redis-server (database 0, shared: namespace your keys)."""
    client = create_redis(embedded_services.redis_url)
    try:
        yield client
    finally:
        await client.aclose()
