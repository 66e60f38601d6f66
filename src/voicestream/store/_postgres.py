"""A private PostgreSQL cluster in ``<data_dir>/postgres``: find binaries, init, start, stop.

Layout::

    postgres/               the cluster itself (PGDATA, mode 0700, owned by the PG account);
                            initialized in postgres.init/ and renamed once complete
    postgres/server.log     server log (rotated once past 10 MiB)
    postgres/.s.PGSQL.N     unix socket, only if its path fits in sun_path

Clients use TCP on 127.0.0.1: it has no path-length limit and needs no access to the socket
directory. Callers hold the data dir lock (see ``_leases``) around every method here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from voicestream.store import db
from voicestream.store._errors import EmbeddedServiceError, service_failure
from voicestream.store._proc import (
    Account,
    CommandResult,
    free_port,
    log_tail,
    pid_alive,
    port_is_free,
    process_name,
    run_command,
)

__all__ = ["DB_NAME", "DB_USER", "EmbeddedPostgres", "find_pg_bindir"]

log = logging.getLogger(__name__)

DB_NAME = "voicestream"
DB_USER = "voicestream"
_SUPERUSER = "postgres"  # bootstrap superuser, named explicitly so it does not follow the OS user
_TOOLS = ("initdb", "pg_ctl", "postgres")
_START_TIMEOUT_S = 60
_READY_TIMEOUT_S = 30.0
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the terminating NUL
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
# pg_ctl builds a /bin/sh command line with these paths inside double quotes.
_UNSAFE_PATH_CHARS = re.compile(r'["$`\\\n]')


def _has_tools(bindir: Path) -> bool:
    return all(os.access(bindir / tool, os.X_OK) for tool in _TOOLS)


def _debian_bindirs() -> list[Path]:
    found = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        with contextlib.suppress(ValueError):
            found.append((float(path.parent.name), path))
    return [path for _, path in sorted(found, reverse=True)]


async def find_pg_bindir(explicit: Path | None = None, cluster_version: str | None = None) -> Path:
    """Where initdb/pg_ctl/postgres live.

    Order: an explicit directory; the Debian directory matching an existing cluster's
    version (a cluster only runs on its own major version); ``pg_config --bindir``; the
    highest ``/usr/lib/postgresql/*/bin``; whatever ``pg_ctl`` is on PATH.
    """
    if explicit is not None:
        if await asyncio.to_thread(_has_tools, explicit):
            return explicit
        raise EmbeddedServiceError(f"{explicit} does not contain {', '.join(_TOOLS)}")
    if cluster_version:
        matching = Path(f"/usr/lib/postgresql/{cluster_version}/bin")
        if await asyncio.to_thread(_has_tools, matching):
            return matching
    pg_config = await asyncio.to_thread(shutil.which, "pg_config")
    if pg_config:
        with contextlib.suppress(OSError, TimeoutError):
            result = await run_command([pg_config, "--bindir"], time_limit=10)
            candidate = Path(result.output.strip())
            found = result.returncode == 0 and await asyncio.to_thread(_has_tools, candidate)
            if found:
                return candidate
    for candidate in await asyncio.to_thread(_debian_bindirs):
        if await asyncio.to_thread(_has_tools, candidate):
            return candidate
    pg_ctl = await asyncio.to_thread(shutil.which, "pg_ctl")
    if pg_ctl is not None:
        on_path = Path(pg_ctl).parent
        if await asyncio.to_thread(_has_tools, on_path):
            return on_path
    raise EmbeddedServiceError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: looked at "
        "pg_config --bindir, /usr/lib/postgresql/*/bin and PATH. Install PostgreSQL "
        "(e.g. apt-get install postgresql) or set DATABASE_URL to use an existing server"
    )


@dataclass(frozen=True)
class _PidInfo:
    pid: int
    port: int | None


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _can_traverse(st: os.stat_result, account: Account, groups: set[int]) -> bool:
    if account.uid == st.st_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


class EmbeddedPostgres:
    def __init__(self, data: Path, *, bindir: Path | None = None) -> None:
        self.data = data
        self.init_dir = data.with_name(data.name + ".init")
        self.log_path = data / "server.log"
        self._bindir_hint = bindir
        self._bindir: Path | None = None
        self._account: Account | None = None
        self._account_resolved = False

    @staticmethod
    def url(port: int) -> str:
        # The private server has no TLS; saying so up front also spares the client a TLS
        # probe and its certificate-file lookups on every new connection.
        return f"postgresql://{DB_USER}@127.0.0.1:{port}/{DB_NAME}?sslmode=disable"

    # --- discovery ----------------------------------------------------------------------

    def _cluster_version(self) -> str | None:
        try:
            return (self.data / "PG_VERSION").read_text().strip()
        except OSError:
            return None

    def _resolve_account(self) -> Account | None:
        """Blocking. Who runs the PG binaries: us, unless we are root.

        As root, an existing cluster keeps running as whoever owns it (so a cluster created
        by a normal user still starts); a new one belongs to the ``postgres`` user.
        """
        if os.geteuid() != 0:
            return None
        with contextlib.suppress(FileNotFoundError):
            st = self.data.stat()
            if st.st_uid != 0:
                return Account.by_uid(st.st_uid, st.st_gid)
        return Account.by_name(_SUPERUSER)

    async def _tool(self, name: str) -> list[str]:
        if self._bindir is None:
            version = await asyncio.to_thread(self._cluster_version)
            self._bindir = await find_pg_bindir(self._bindir_hint, version)
        if not self._account_resolved:
            self._account = await asyncio.to_thread(self._resolve_account)
            self._account_resolved = True
        prefix = await asyncio.to_thread(self._account.command_prefix) if self._account else []
        return [*prefix, str(self._bindir / name)]

    async def _run(self, tool: str, *args: str, time_limit: float) -> CommandResult:
        argv = await self._tool(tool)
        # PG* variables (PGPORT, PGDATA ...) of the caller must not leak into our cluster.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        # cwd "/": the PG account may not be allowed into our working directory.
        return await run_command([*argv, *args], time_limit=time_limit, cwd=Path("/"), env=env)

    # --- file system work (blocking) ---------------------------------------------------

    def _check_access(self) -> None:
        """Fail early, with a fix, where PostgreSQL could not reach its directory."""
        if _UNSAFE_PATH_CHARS.search(str(self.data)):
            raise EmbeddedServiceError(
                f"the data dir path {str(self.data.parent)!r} contains a character that "
                "PostgreSQL's pg_ctl cannot quote (\" $ ` \\ or newline); choose another one"
            )
        account = self._account
        if account is None:
            return
        groups = set(os.getgrouplist(account.name, account.gid))
        data_dir = self.data.parent
        st = data_dir.stat()
        if not _can_traverse(st, account, groups):
            # The data dir is ours (typically created 0700 by root): let the PG account pass
            # through it. Search permission only; it still cannot list or read anything.
            os.chmod(data_dir, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
        for ancestor in data_dir.parents:
            st = ancestor.stat()
            if not _can_traverse(st, account, groups):
                raise EmbeddedServiceError(
                    f"PostgreSQL runs as {account.name!r} but cannot enter {ancestor} "
                    f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); make it "
                    f"searchable (chmod o+x {ancestor}) or use a data dir elsewhere"
                )

    def _make_init_dir(self) -> None:
        # A leftover is an init that died half way; nothing in it is worth keeping. Created
        # here (not by initdb) because the PG account may not create entries in the data dir.
        shutil.rmtree(self.init_dir, ignore_errors=True)
        self.init_dir.mkdir(mode=0o700)
        if self._account is not None:
            os.chown(self.init_dir, self._account.uid, self._account.gid)

    def _write_owned(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self._account is not None:
            os.chown(path, self._account.uid, self._account.gid)
        os.chmod(path, 0o600)

    def _finish_init(self) -> None:
        tmp = self.init_dir
        self._write_owned(
            tmp / "pg_hba.conf",
            "# Written by voicestream. Trust only the private socket directory (mode 0700)\n"
            "# and loopback TCP; the server listens on nothing else.\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n",
        )
        with (tmp / "postgresql.conf").open("a") as fh:
            fh.write("\n# Per-start settings written by voicestream.\ninclude 'voicestream.conf'\n")
        if self.data.exists() and any(self.data.iterdir()):
            raise EmbeddedServiceError(
                f"{self.data} exists but is not a PostgreSQL cluster (no PG_VERSION); "
                "move it away so the embedded database can be created there"
            )
        with contextlib.suppress(FileNotFoundError):
            self.data.rmdir()
        os.replace(tmp, self.data)

    def _write_runtime_conf(self, port: int) -> None:
        # The socket lives in the cluster directory: mode 0700, so only the PG account (and
        # root) can use it, which is what makes "local trust" acceptable.
        socket_path = self.data / f".s.PGSQL.{port}"
        sockets = str(self.data) if len(os.fsencode(socket_path)) <= _SUN_PATH_MAX else ""
        self._write_owned(
            self.data / "voicestream.conf",
            "# Rewritten by voicestream on every start; edits are lost.\n"
            f"port = {port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = {_conf_quote(sockets)}\n",
        )

    def _prepare_log(self) -> int:
        """Rotate an oversized log; return the offset where this start's messages begin."""
        try:
            size = self.log_path.stat().st_size
        except FileNotFoundError:
            return 0
        if size > _LOG_ROTATE_BYTES:
            os.replace(self.log_path, self.log_path.with_suffix(".log.1"))
            return 0
        return size

    def _read_pidfile(self) -> _PidInfo | None:
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        return _PidInfo(pid, port)

    def _live_postmaster(self) -> _PidInfo | None:
        """The running postmaster of this cluster, removing a pid file that lies.

        PostgreSQL itself ignores a pid file whose process is gone, but after a reboot the
        pid may belong to some unrelated process, and then it refuses to start.
        """
        info = self._read_pidfile()
        if info is None or not pid_alive(info.pid):
            return None
        name = process_name(info.pid)
        if name is not None and name != "postgres":
            with contextlib.suppress(FileNotFoundError):
                (self.data / "postmaster.pid").unlink()
            return None
        return info

    def _remove_dead_pidfile(self) -> None:
        """Blocking. Drop the pid file of a postmaster that was killed and is now a zombie.

        PostgreSQL takes a pid that still answers ``kill(pid, 0)`` for a running server and
        refuses to start; a killed postmaster stays a zombie until something reaps it, which
        a container's PID 1 may never do. Orphaned backends are still caught by PostgreSQL's
        own shared-memory check, so removing the file cannot let two servers share a cluster.
        """
        info = self._read_pidfile()
        if info is not None and not pid_alive(info.pid):
            with contextlib.suppress(FileNotFoundError):
                (self.data / "postmaster.pid").unlink()

    def live_pid(self) -> int | None:
        """Blocking. The pid of this cluster's running postmaster, None if it is not running."""
        info = self._live_postmaster()
        return info.pid if info else None

    # --- lifecycle ---------------------------------------------------------------------

    async def running_port(self) -> int | None:
        """Port of this cluster's running, answering postmaster; None if it is not running."""
        info = await asyncio.to_thread(self._live_postmaster)
        if info is None or info.port is None:
            return None
        await self._bootstrap(info.port, info.pid)
        return info.port

    async def start(self, preferred_port: int | None) -> int:
        """Init the cluster if needed, start it, and return its port."""
        self._account = await asyncio.to_thread(self._resolve_account)
        self._account_resolved = True
        await asyncio.to_thread(self._check_access)
        if not await asyncio.to_thread((self.data / "PG_VERSION").exists):
            await self._init()
        for _attempt in range(3):
            port = preferred_port
            if port is None or not await asyncio.to_thread(port_is_free, port):
                port = await asyncio.to_thread(free_port)
            await asyncio.to_thread(self._write_runtime_conf, port)
            await asyncio.to_thread(self._remove_dead_pidfile)
            offset = await asyncio.to_thread(self._prepare_log)
            began = time.monotonic()
            result = await self._run(
                "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_path),
                "-w", "-t", str(_START_TIMEOUT_S), "-s",
                time_limit=_START_TIMEOUT_S + 10,
            )  # fmt: skip
            if result.returncode == 0:
                info = await asyncio.to_thread(self._read_pidfile)
                await self._bootstrap(port, info.pid if info else None)
                log.info("started PostgreSQL on 127.0.0.1:%d in %.2fs", port, _since(began))
                return port
            tail = await asyncio.to_thread(log_tail, self.log_path, offset)
            if "could not bind" in tail or "Address already in use" in tail:
                preferred_port = None  # lost a race for the port; pick another
                continue
            raise self._error("PostgreSQL failed to start", result.output, tail)
        raise EmbeddedServiceError("PostgreSQL could not bind a port after 3 attempts")

    async def stop(self) -> None:
        info = await asyncio.to_thread(self._live_postmaster)
        if info is None:
            return
        began = time.monotonic()
        result = await self._run(
            "pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "-s",
            time_limit=70,
        )  # fmt: skip
        if result.returncode != 0 and await asyncio.to_thread(pid_alive, info.pid):
            # A fast shutdown that hangs (e.g. a stuck checkpoint) should not keep us from
            # exiting; immediate mode is crash-safe, recovery runs at the next start.
            log.warning("pg_ctl stop -m fast failed, using immediate: %s", result.output.strip())
            await self._run(
                "pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-s",
                time_limit=70,
            )  # fmt: skip
        log.info("stopped PostgreSQL in %.2fs", _since(began))

    async def _init(self) -> None:
        await asyncio.to_thread(self._make_init_dir)
        began = time.monotonic()
        result = await self._run(
            "initdb", "-D", str(self.init_dir), "-U", _SUPERUSER, "--encoding=UTF8", "--no-locale",
            "--auth-local=trust", "--auth-host=trust",
            time_limit=300,
        )  # fmt: skip
        if result.returncode != 0:
            raise self._error("initdb failed", result.output, "")
        await asyncio.to_thread(self._finish_init)
        log.info("initialized PostgreSQL cluster in %s in %.2fs", self.data, _since(began))

    async def _bootstrap(self, port: int, pid: int | None) -> None:
        """Wait until the server answers; create the voicestream role and database if missing.

        Runs on every acquire, not only after initdb, so a process that died between initdb
        and this step leaves nothing half done.
        """
        conn = await self._connect_when_ready(port, pid)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", DB_USER):
                await conn.execute(f"CREATE ROLE {DB_USER} LOGIN")
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME):
                await conn.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
        finally:
            await conn.close()

    async def _connect_when_ready(self, port: int, pid: int | None) -> db.Connection:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            try:
                return await db.connect(
                    host="127.0.0.1",
                    port=port,
                    user=_SUPERUSER,
                    database="postgres",
                    ssl=False,
                    connect_timeout_s=5,
                )
            except (OSError, TimeoutError, db.PostgresError) as exc:
                # "starting up" / connection refused: retry until the deadline, unless the
                # postmaster is already gone (then the log says why).
                gone = pid is not None and not await asyncio.to_thread(pid_alive, pid)
                if gone or time.monotonic() >= deadline:
                    tail = await asyncio.to_thread(log_tail, self.log_path)
                    raise self._error(
                        f"PostgreSQL on 127.0.0.1:{port} is not answering ({exc})", "", tail
                    ) from exc
                await asyncio.sleep(0.1)

    def _error(self, what: str, output: str, tail: str) -> EmbeddedServiceError:
        return service_failure(what, output, tail, self.log_path)


def _since(began: float) -> float:
    return time.monotonic() - began
