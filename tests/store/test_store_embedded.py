"""Embedded PostgreSQL + redis-server: one set of services per data dir, shared by every
process using it, alive exactly as long as someone holds a lease. Real processes throughout.

Tests in this module share one data dir (one initdb); each leaves the services stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from blockbuster import blockbuster_ctx

from fixtures_services import cli_env, make_data_dir, run_cli, unique_name
from voicestream.store import db
from voicestream.store._proc import pid_alive
from voicestream.store.embedded import EmbeddedServiceError, EmbeddedServices, ServiceURLs
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.redis_client import create_redis

# Acquires, prints the URLs, releases when a line arrives on stdin.
HOLDER = """
import asyncio, sys
from voicestream.store.embedded import EmbeddedServices

async def main() -> None:
    services = EmbeddedServices(sys.argv[1])
    urls = await services.acquire()
    print(urls.database_url, urls.redis_url, flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await services.release()

asyncio.run(main())
"""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def data_dir() -> AsyncIterator[Path]:
    path = await asyncio.to_thread(make_data_dir, "voicestream-lifecycle-")
    yield path
    await asyncio.to_thread(shutil.rmtree, path, True)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def _pids(data_dir: Path) -> tuple[int | None, int | None]:
    pg = await asyncio.to_thread(_pid, data_dir / "postgres" / "postmaster.pid")
    rd = await asyncio.to_thread(_pid, data_dir / "redis" / "redis.pid")
    return pg, rd


async def _alive(pid: int | None) -> bool:
    return pid is not None and await asyncio.to_thread(pid_alive, pid)


async def _assert_stopped(data_dir: Path, *pids: int | None) -> None:
    for pid in pids:
        assert pid is not None
        assert not await _alive(pid), f"process {pid} outlived the last lease"
    pg, rd = await _pids(data_dir)
    assert not await _alive(pg) and not await _alive(rd)


async def _state(data_dir: Path) -> dict[str, int]:
    text = await asyncio.to_thread((data_dir / "run" / "services.json").read_text)
    state: dict[str, int] = json.loads(text)
    return state


async def _leases(data_dir: Path) -> list[str]:
    names = await asyncio.to_thread(os.listdir, data_dir / "run" / "leases")
    return sorted(n for n in names if n.isdigit())


async def _check_working(urls: ServiceURLs) -> None:
    conn = await db.connect(urls.database_url)
    try:
        assert await conn.fetchval("SELECT current_user") == "voicestream"
        assert await conn.fetchval("SELECT current_database()") == "voicestream"
    finally:
        await conn.close()
    client = create_redis(urls.redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


async def _start_holder(data_dir: Path) -> tuple[asyncio.subprocess.Process, ServiceURLs]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        str(data_dir),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    database_url, redis_url = line.decode().split()
    return proc, ServiceURLs(database_url, redis_url)


async def _release_holder(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"release\n")
    await proc.stdin.drain()
    await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0


async def test_first_acquire_initializes_and_starts_last_release_stops(data_dir: Path) -> None:
    first = EmbeddedServices(data_dir)
    urls = await first.acquire()
    try:
        assert (data_dir / "postgres" / "PG_VERSION").is_file()
        pg, rd = await _pids(data_dir)
        assert await _alive(pg) and await _alive(rd)
        state = await _state(data_dir)
        assert f"@127.0.0.1:{state['postgres_port']}/voicestream" in urls.database_url
        assert urls.redis_url == f"redis://127.0.0.1:{state['redis_port']}/0"
        await _check_working(urls)

        # A second acquirer finds the same running services and starts nothing.
        async with EmbeddedServices(data_dir) as again:
            assert again == urls
            assert await _pids(data_dir) == (pg, rd)
        # ...and its release leaves them running for the first.
        assert await _alive(pg) and await _alive(rd)
        await _check_working(urls)
    finally:
        await first.release()
    await _assert_stopped(data_dir, pg, rd)
    assert await _leases(data_dir) == []


async def test_cli_in_another_process_uses_the_running_services(
    data_dir: Path, db_pool: db.Pool
) -> None:
    workspace = unique_name("shared")
    async with EmbeddedServices(data_dir) as urls:
        pg, rd = await _pids(data_dir)
        state = await _state(data_dir)

        result = await run_cli(
            "keys", "create", "--data-dir", str(data_dir), "--workspace", workspace
        )
        assert result.returncode == 0, result.stderr
        key = result.stdout.strip()

        # Same postmaster, still running after the CLI released its lease; same ports.
        assert await _pids(data_dir) == (pg, rd)
        assert await _alive(pg) and await _alive(rd)
        assert await _state(data_dir) == state
        # The key went into this very database.
        pool = await db.create_pool(urls.database_url, max_size=2)
        try:
            principal = await ApiKeyRepository(pool).authenticate(key)
        finally:
            await db.close_pool(pool)
        assert principal is not None and principal.workspace_name == workspace
    await _assert_stopped(data_dir, pg, rd)
    # Not the session database: the CLI did not fall back to anything else.
    assert await ApiKeyRepository(db_pool).authenticate(key) is None


async def test_release_in_one_process_keeps_services_for_another(data_dir: Path) -> None:
    holder, holder_urls = await _start_holder(data_dir)
    try:
        async with EmbeddedServices(data_dir) as urls:
            assert urls == holder_urls
            pg, rd = await _pids(data_dir)
            assert len(await _leases(data_dir)) == 2  # the holder's and ours
        # We released; the holder still needs them.
        assert await _alive(pg) and await _alive(rd)
        await _check_working(urls)
    finally:
        await _release_holder(holder)
    await _assert_stopped(data_dir, pg, rd)


async def test_stale_leases_of_dead_processes_are_ignored(data_dir: Path) -> None:
    holder, holder_urls = await _start_holder(data_dir)
    pg, rd = await _pids(data_dir)
    holder.send_signal(signal.SIGKILL)  # dies holding its lease
    await holder.wait()
    leases_dir = data_dir / "run" / "leases"
    assert str(holder.pid) in await _leases(data_dir)
    # Plus a lease of a pid that does not exist at all.
    await asyncio.to_thread(
        (leases_dir / "4194300").write_text, '{"pid": 4194300, "leases": {"x": ["postgres"]}}'
    )
    assert await _alive(pg) and await _alive(rd)  # orphaned, not stopped by anyone yet

    async with EmbeddedServices(data_dir) as urls:
        assert urls == holder_urls
        assert await _pids(data_dir) == (pg, rd)  # reused, not restarted
        assert await _leases(data_dir) == [str(os.getpid())]  # stale ones swept
    await _assert_stopped(data_dir, pg, rd)
    assert await _leases(data_dir) == []


async def test_restart_after_stop_keeps_data_and_ports(data_dir: Path) -> None:
    workspace = unique_name("persist")
    # Nothing is running: the CLI starts PostgreSQL for itself and stops it again.
    result = await run_cli("keys", "create", "--data-dir", str(data_dir), "--workspace", workspace)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    pg, _ = await _pids(data_dir)
    assert not await _alive(pg)
    state = await _state(data_dir)

    async with EmbeddedServices(data_dir) as urls:
        pool = await db.create_pool(urls.database_url, max_size=2)
        try:
            principal = await ApiKeyRepository(pool).authenticate(key)
        finally:
            await db.close_pool(pool)
        assert principal is not None and principal.workspace_name == workspace
        client = create_redis(urls.redis_url)
        try:
            await client.set("persist-check", workspace)
        finally:
            await client.aclose()
    pg, rd = await _pids(data_dir)
    assert not await _alive(pg) and not await _alive(rd)

    async with EmbeddedServices(data_dir) as urls:
        # Ports are reused while free, so URLs handed out earlier stay valid.
        assert (await _state(data_dir))["postgres_port"] == state["postgres_port"]
        client = create_redis(urls.redis_url)
        try:
            assert await client.get("persist-check") == workspace.encode()  # append-only file
        finally:
            await client.aclose()


async def test_acquire_and_release_never_block_the_event_loop(data_dir: Path) -> None:
    with blockbuster_ctx("voicestream"):
        async with EmbeddedServices(data_dir) as urls:
            async with EmbeddedServices(data_dir) as again:
                assert again == urls


async def test_concurrent_first_acquirers_share_one_initialization() -> None:
    fresh = await asyncio.to_thread(make_data_dir, "voicestream-race-")
    try:
        started = await asyncio.gather(*(_start_holder(fresh) for _ in range(3)))
        assert len({urls for _, urls in started}) == 1
        pg, rd = await _pids(fresh)
        for proc, _ in started:
            await _release_holder(proc)
        await _assert_stopped(fresh, pg, rd)
    finally:
        await asyncio.to_thread(shutil.rmtree, fresh, True)


async def test_start_failure_reports_the_log_tail_and_leaves_nothing_running() -> None:
    fresh = await asyncio.to_thread(make_data_dir, "voicestream-broken-")
    try:
        with blockbuster_ctx("voicestream"):  # first use (initdb) does not block the loop
            async with EmbeddedServices(fresh):
                pass
        conf = fresh / "postgres" / "postgresql.conf"
        text = await asyncio.to_thread(conf.read_text)
        await asyncio.to_thread(conf.write_text, text + "\nno_such_setting_here = 1\n")
        services = EmbeddedServices(fresh)
        with pytest.raises(EmbeddedServiceError) as caught:
            await services.acquire()
        message = str(caught.value)
        assert "PostgreSQL failed to start" in message
        assert "server.log" in message and "no_such_setting_here" in message
        assert await _leases(fresh) == []
        await services.release()  # harmless without a lease
    finally:
        await asyncio.to_thread(shutil.rmtree, fresh, True)


async def test_missing_postgres_binaries_is_a_clear_error() -> None:
    fresh = await asyncio.to_thread(make_data_dir, "voicestream-nobin-")
    try:
        services = EmbeddedServices(fresh, pg_bindir=fresh / "nowhere")
        with pytest.raises(EmbeddedServiceError, match="does not contain initdb"):
            await services.acquire()
        assert await _leases(fresh) == []
    finally:
        await asyncio.to_thread(shutil.rmtree, fresh, True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another user")
async def test_data_dir_the_postgres_user_cannot_reach_gets_its_cluster_elsewhere() -> None:
    """Root's data dir under a private home: the cluster moves where postgres can reach it."""
    outer = await asyncio.to_thread(make_data_dir, "voicestream-private-")
    await asyncio.to_thread(os.chmod, outer, stat.S_IRWXU)  # root only, like /root or tmp_path
    data = outer / "data"
    target: Path | None = None
    try:
        async with EmbeddedServices(data) as urls:
            link = data / "postgres"
            assert link.is_symlink()
            target = link.resolve()
            assert not target.is_relative_to(outer)
            conn = await db.connect(urls.database_url)
            try:
                assert await conn.fetchval("SELECT 1") == 1
            finally:
                await conn.close()
        # A second process with the same data dir follows the link to the same cluster.
        async with EmbeddedServices(data) as urls:
            assert (data / "postgres").resolve() == target
    finally:
        await asyncio.to_thread(shutil.rmtree, outer, True)
        if target is not None:
            await asyncio.to_thread(shutil.rmtree, target, True)
