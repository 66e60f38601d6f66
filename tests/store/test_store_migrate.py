"""Forward-only migrations: idempotent, recorded, safe to run from several places at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest_asyncio

from voicestream.store import db
from voicestream.store.embedded import ServiceURLs
from voicestream.store.migrate import load_migrations, migrate


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database(embedded_services: ServiceURLs) -> AsyncIterator[str]:
    """URL of a brand-new database in the session cluster, dropped afterwards."""
    port = urlsplit(embedded_services.database_url).port
    name = f"migrate_{uuid.uuid4().hex[:12]}"
    # The bootstrap superuser, trusted on loopback in the embedded cluster.
    admin = await db.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    try:
        await admin.execute(f"CREATE DATABASE {name} OWNER voicestream")
        yield f"postgresql://voicestream@127.0.0.1:{port}/{name}?sslmode=disable"
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


def test_migrations_ship_in_order() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions[0] == "0001_init"
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


async def test_second_run_applies_nothing(db_pool: db.Pool) -> None:
    assert await migrate(db_pool) == []
    recorded = await db_pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in recorded] == [m.version for m in load_migrations()]


async def test_concurrent_runs_apply_each_migration_once(empty_database: str) -> None:
    conns = [await db.connect(empty_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in conns))
        everything = [m.version for m in load_migrations()]
        assert sorted(results, key=len) == [[], [], [], everything]
        tables = await conns[0].fetchval(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_name IN ('workspaces', 'api_keys', 'usage_records')"
        )
        assert tables == 3
        assert await migrate(conns[0]) == []
    finally:
        for conn in conns:
            await conn.close()


async def test_session_state_is_restored_after_migrating(empty_database: str) -> None:
    conn = await db.connect(empty_database, server_settings={"statement_timeout": "5s"})
    try:
        assert await migrate(conn)
        # The advisory lock is released and the connection's own timeout is back.
        locks = await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert locks == 0
        assert await conn.fetchval("SHOW statement_timeout") == "5s"
    finally:
        await conn.close()
