"""Private PostgreSQL and redis-server under the data dir, shared by every process using it.

Layout::

    <data_dir>/postgres/            the cluster (PGDATA), with its log and unix socket; as
                                    root under a private home dir (see _postgres_dir) a
                                    symlink to /var/lib/voicestream/postgres/<hash>
    <data_dir>/redis/               redis.conf, append-only files, pid file and log
    <data_dir>/run/services.json    the ports last used, reused while they stay free
    <data_dir>/run/lock             flock serializing every start, stop and lease change
    <data_dir>/run/leases/<pid>     one file per process holding the services

Whoever acquires first starts the services (initializing the cluster on first use); later
acquirers, in this or any other process, find them running and just add a lease. Release
drops the lease and stops whatever no live lease still needs, so the services run exactly
as long as someone uses them, whether that is the server, a CLI command, or both.

Security model: both servers listen on 127.0.0.1 only and do not ask local clients for a
password (PostgreSQL trusts loopback TCP and its 0700 socket directory). That is meant for
a single-user machine or container; set DATABASE_URL / REDIS_URL for anything shared.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from voicestream.store._errors import EmbeddedServiceError
from voicestream.store._leases import ALL_SERVICES, DirLock, add_lease, live_needs, remove_lease
from voicestream.store._postgres import EmbeddedPostgres
from voicestream.store._proc import port_is_free
from voicestream.store._redis_server import EmbeddedRedis

__all__ = ["EmbeddedServiceError", "EmbeddedServices", "ServiceURLs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceURLs:
    database_url: str
    redis_url: str


@dataclass
class _State:
    postgres_port: int | None = None
    redis_port: int | None = None


@dataclass(frozen=True)
class _Layout:
    data_dir: Path
    run_dir: Path
    leases_dir: Path
    lock_path: Path
    state_path: Path
    postgres_dir: Path

    @classmethod
    def create(cls, data_dir: Path) -> _Layout:
        """Blocking: resolve the path and create the run directories."""
        root = Path(os.path.abspath(data_dir))
        run = root / "run"
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        run.mkdir(mode=0o700, exist_ok=True)
        layout = cls(
            root, run, run / "leases", run / "lock", run / "services.json", _postgres_dir(root)
        )
        layout.leases_dir.mkdir(mode=0o700, exist_ok=True)
        return layout

    def read_state(self) -> _State:
        try:
            raw = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return _State()
        state = _State()
        if isinstance(raw, dict):
            for field in ("postgres_port", "redis_port"):
                value = raw.get(field)
                if isinstance(value, int) and 0 < value < 65536:
                    setattr(state, field, value)
        return state

    def write_state(self, state: _State) -> None:
        tmp = self.state_path.with_name(".services.json.tmp")
        tmp.write_text(
            json.dumps({"postgres_port": state.postgres_port, "redis_port": state.redis_port})
        )
        os.replace(tmp, self.state_path)


_ROOT_CLUSTERS = Path("/var/lib/voicestream/postgres")


def _postgres_dir(root: Path) -> Path:
    """Blocking: where this data dir's cluster lives.

    PostgreSQL refuses to run as root, so as root it runs as ``postgres``, which must be able
    to walk down to its directory. A data dir under a private home (``/root`` is 0700) is out of
    its reach, and changing the permissions of a user's home is not ours to do: there the
    cluster lives under /var/lib/voicestream, and ``<data_dir>/postgres`` is a symlink to it,
    so every process using the data dir still finds it.
    """
    link = root / "postgres"
    if link.is_symlink():
        return link.resolve()
    if os.geteuid() != 0 or link.exists() or _others_can_reach(root.parent):
        return link
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    target = _ROOT_CLUSTERS / digest
    _ROOT_CLUSTERS.mkdir(mode=0o755, parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    log.info("cluster for %s lives in %s (the data dir is not reachable by postgres)", root, target)
    return target


def _others_can_reach(path: Path) -> bool:
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (path, *path.parents))


class EmbeddedServices:
    """Lease on the private services of one data dir.

    ``async with EmbeddedServices(path) as urls:`` acquires both services; use
    ``acquire_only`` to lease just one of them (the other is then neither started nor kept
    alive on our behalf). One instance holds at most one lease at a time.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        pg_bindir: Path | None = None,
        redis_server: Path | None = None,
    ) -> None:
        self._data_dir = Path(data_dir)
        self._pg_bindir = pg_bindir
        self._redis_binary = redis_server
        self._layout: _Layout | None = None
        self._token: str | None = None
        self._wanted: frozenset[str] = frozenset()

    async def __aenter__(self) -> ServiceURLs:
        return await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()

    async def acquire(self) -> ServiceURLs:
        """Lease both services, starting them if they are not running; return their URLs."""
        database_url, redis_url = await self.acquire_only(postgres=True, redis=True)
        assert database_url is not None and redis_url is not None  # both were requested
        return ServiceURLs(database_url=database_url, redis_url=redis_url)

    async def acquire_only(
        self, *, postgres: bool = True, redis: bool = True
    ) -> tuple[str | None, str | None]:
        """Lease a subset of the services; return ``(database_url, redis_url)``.

        The URL of a service that was not requested is None.
        """
        if self._token is not None:
            raise RuntimeError("this EmbeddedServices already holds a lease; release it first")
        wanted = {name for name, on in (("postgres", postgres), ("redis", redis)) if on}
        if not wanted:
            raise ValueError("acquire_only needs at least one of postgres, redis")
        layout = await self._get_layout()
        pg, rd = self._services(layout)
        token = secrets.token_hex(8)
        async with DirLock(layout.lock_path):
            needed_by_others = await asyncio.to_thread(live_needs, layout.leases_dir)
            state = await asyncio.to_thread(layout.read_state)
            try:
                database_url = redis_url = None
                if postgres:
                    port = await pg.running_port() or await pg.start(state.postgres_port)
                    state.postgres_port = port
                    database_url = pg.url(port)
                if redis:
                    port = await rd.running_port(state.redis_port) or await rd.start(
                        state.redis_port
                    )
                    state.redis_port = port
                    redis_url = rd.url(port)
                await asyncio.to_thread(layout.write_state, state)
                await asyncio.to_thread(add_lease, layout.leases_dir, token, wanted)
            except BaseException:
                # Do not leave behind services nobody holds a lease on. Cancellation lands
                # here too: the cleanup awaits still run, only the caller's await is over.
                await self._stop_unneeded(layout, needed_by_others, state)
                raise
        self._token = token
        self._wanted = frozenset(wanted)
        return database_url, redis_url

    async def dead_services(self) -> set[str]:
        """The leased services whose process is gone (killed, crashed, OOM-killed)."""
        if self._token is None or self._layout is None:
            return set()
        pg, rd = self._services(self._layout)
        dead = set()
        if "postgres" in self._wanted and await asyncio.to_thread(pg.live_pid) is None:
            dead.add("postgres")
        if "redis" in self._wanted and await asyncio.to_thread(rd.live_pid) is None:
            dead.add("redis")
        return dead

    async def restart(self, names: set[str]) -> None:
        """Start the leased services ``names`` again, on the ports their clients know.

        Whoever gets the lock first restarts; another process finds the service running
        again and leaves it be. Raises EmbeddedServiceError when a start fails, or when the
        port is taken: the clients of this process (and of every other one leasing the
        data dir) only know the old port, so a service on another one would be a silent,
        permanent outage. The caller retries until the port is free again.
        """
        if self._token is None or self._layout is None:
            return
        layout = self._layout
        pg, rd = self._services(layout)
        async with DirLock(layout.lock_path):
            state = await asyncio.to_thread(layout.read_state)
            if "postgres" in names & self._wanted and not await pg.running_port():
                known = await _free_known_port("PostgreSQL", state.postgres_port)
                port = await pg.start(known)
                if known is not None and port != known:
                    await pg.stop()
                    raise _moved("PostgreSQL", known, port)
                state.postgres_port = port
            if "redis" in names & self._wanted and not await rd.running_port(state.redis_port):
                known = await _free_known_port("redis-server", state.redis_port)
                port = await rd.start(known)
                if known is not None and port != known:
                    await rd.stop(port)
                    raise _moved("redis-server", known, port)
                state.redis_port = port
            await asyncio.to_thread(layout.write_state, state)

    async def release(self) -> None:
        """Drop our lease; stop the services that no live lease needs any more."""
        token, self._token = self._token, None
        self._wanted = frozenset()
        if token is None or self._layout is None:
            return
        layout = self._layout
        async with DirLock(layout.lock_path):
            await asyncio.to_thread(remove_lease, layout.leases_dir, token)
            needed = await asyncio.to_thread(live_needs, layout.leases_dir)
            state = await asyncio.to_thread(layout.read_state)
            await self._stop_unneeded(layout, needed, state, raise_errors=True)

    async def stop_orphaned(self) -> None:
        """Stop the services that no live lease needs, without holding a lease ourselves.

        For the watchdog of a process that died holding a lease: its lease is stale now, so
        whatever only it needed stops, and whatever another process still uses runs on.
        """
        layout = await self._get_layout()
        async with DirLock(layout.lock_path):
            needed = await asyncio.to_thread(live_needs, layout.leases_dir)
            state = await asyncio.to_thread(layout.read_state)
            await self._stop_unneeded(layout, needed, state, raise_errors=True)

    async def _get_layout(self) -> _Layout:
        if self._layout is None:
            self._layout = await asyncio.to_thread(_Layout.create, self._data_dir)
        return self._layout

    def _services(self, layout: _Layout) -> tuple[EmbeddedPostgres, EmbeddedRedis]:
        return (
            EmbeddedPostgres(layout.postgres_dir, bindir=self._pg_bindir),
            EmbeddedRedis(layout.data_dir / "redis", binary=self._redis_binary),
        )

    async def _stop_unneeded(
        self, layout: _Layout, needed: set[str], state: _State, *, raise_errors: bool = False
    ) -> None:
        pg, rd = self._services(layout)
        errors: list[BaseException] = []
        for name in sorted(ALL_SERVICES - needed):
            try:
                if name == "postgres":
                    await pg.stop()
                else:
                    await rd.stop(state.redis_port)
            except Exception as exc:
                log.warning("could not stop embedded %s: %s", name, exc)
                errors.append(exc)
        if errors and raise_errors:
            raise EmbeddedServiceError(
                "could not stop embedded services: " + "; ".join(str(e) for e in errors)
            )

    @property
    def data_dir(self) -> Path:
        return self._layout.data_dir if self._layout else self._data_dir


async def _free_known_port(name: str, port: int | None) -> int | None:
    if port is not None and not await asyncio.to_thread(port_is_free, port):
        raise EmbeddedServiceError(
            f"embedded {name} cannot come back: its port {port} is taken by another process"
        )
    return port


def _moved(name: str, old: int, new: int) -> EmbeddedServiceError:
    # Lost a race for the old port while starting: stopped again, the next try insists.
    return EmbeddedServiceError(f"embedded {name} could only start on port {new}, not {old}")
