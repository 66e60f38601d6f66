"""open_services / open_database: configured URLs win, each missing one is served embedded."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from blockbuster import blockbuster_ctx

from fixtures_services import make_data_dir
from voicestream.config import load_settings
from voicestream.store._proc import pid_alive
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.services import (
    ServiceConnectionError,
    open_database,
    open_services,
    redact_url,
)


@pytest_asyncio.fixture(loop_scope="session")
async def data_dir() -> AsyncIterator[Path]:
    path = await asyncio.to_thread(make_data_dir, "voicestream-services-")
    yield path
    await asyncio.to_thread(shutil.rmtree, path, True)


async def test_configured_urls_start_nothing(
    embedded_services: ServiceURLs, data_dir: Path
) -> None:
    settings = load_settings(
        {},
        data_dir=data_dir,
        database_url=embedded_services.database_url,
        redis_url=embedded_services.redis_url,
    )
    with blockbuster_ctx("voicestream"):
        async with open_services(settings) as services:
            assert services.urls == embedded_services
            keys = ApiKeyRepository(services.pool)
            _, plaintext = await keys.create(workspace="configured")
            # Five at once, from voicestream code (which is what blockbuster watches): the
            # pool grows past its first connection, and opening those must not block.
            results = await asyncio.gather(*(keys.authenticate(plaintext) for _ in range(5)))
            assert all(results)
            assert await services.redis.ping()
    assert not await asyncio.to_thread((data_dir / "run").exists)


async def test_only_the_missing_service_is_embedded(
    embedded_services: ServiceURLs, data_dir: Path
) -> None:
    settings = load_settings({}, data_dir=data_dir, database_url=embedded_services.database_url)
    async with open_services(settings) as services:
        assert services.urls.database_url == embedded_services.database_url
        assert services.urls.redis_url != embedded_services.redis_url
        await services.redis.set("where", "embedded")
        assert await services.redis.get("where") == b"embedded"
        # No PostgreSQL was started for this data dir.
        assert not await asyncio.to_thread((data_dir / "postgres").exists)
        pid = int(await asyncio.to_thread((data_dir / "redis" / "redis.pid").read_text))
    # Released on exit: this was the only lease, so redis-server is gone.
    assert not await asyncio.to_thread(pid_alive, pid)


async def test_open_database_embedded_is_migrated_and_released(data_dir: Path) -> None:
    settings = load_settings({}, data_dir=data_dir)
    async with open_database(settings) as database:
        _, plaintext = await ApiKeyRepository(database.pool).create(workspace="svc")
        assert await ApiKeyRepository(database.pool).authenticate(plaintext) is not None
    pid_file = data_dir / "postgres" / "postmaster.pid"
    assert not await asyncio.to_thread(pid_file.exists)
    assert not await asyncio.to_thread((data_dir / "redis").exists)  # not needed, not started


async def test_unreachable_database_is_a_clear_error_without_the_password(
    data_dir: Path,
) -> None:
    settings = load_settings(
        {},
        data_dir=data_dir,
        database_url="postgresql://app:s3cret@127.0.0.1:1/app",
        redis_url="redis://127.0.0.1:1/0",
    )
    with pytest.raises(ServiceConnectionError) as caught:
        async with open_services(settings):
            pass
    assert "127.0.0.1:1" in str(caught.value) and "s3cret" not in str(caught.value)


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    assert redact_url("redis://:pw@h/0") == "redis://:***@h/0"
