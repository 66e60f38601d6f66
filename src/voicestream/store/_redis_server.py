"""A private redis-server in ``<data_dir>/redis``: configure, start detached, stop.

It daemonizes itself (own session, pid file, log file), so it outlives the process that
started it for exactly as long as the leases say. Callers hold the data dir lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import time
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from voicestream.store._errors import EmbeddedServiceError, service_failure
from voicestream.store._proc import (
    free_port,
    log_tail,
    pid_alive,
    port_is_free,
    process_name,
    run_command,
    signal_pid,
    wait_pid_gone,
)
from voicestream.store.redis_client import DRIVER_INFO

__all__ = ["EmbeddedRedis"]

log = logging.getLogger(__name__)

_READY_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 15.0


def _conf_quote(value: str) -> str:
    # redis.conf strings: double quotes with backslash escapes (sdssplitargs).
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    def __init__(self, root: Path, *, binary: Path | None = None) -> None:
        self.root = root
        self.conf_path = root / "redis.conf"
        self.pid_path = root / "redis.pid"
        self.log_path = root / "redis.log"
        self._binary = binary

    @staticmethod
    def url(port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    # --- blocking helpers --------------------------------------------------------------

    def _find_binary(self) -> str:
        if self._binary is not None:
            return str(self._binary)
        found = shutil.which("redis-server")
        if not found:
            raise EmbeddedServiceError(
                "redis-server not found on PATH; install Redis (e.g. apt-get install "
                "redis-server) or set REDIS_URL to use an existing server"
            )
        return found

    def live_pid(self) -> int | None:
        """Blocking. The pid of our running redis-server, None if it is not running."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        name = process_name(pid)
        if name is not None and not name.startswith("redis-server"):
            return None  # the pid was reused after a reboot; the file is stale
        return pid

    def _write_conf(self, port: int) -> int:
        """Write the config for ``port``; return the log offset where this start begins."""
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.conf_path.write_text(
            "# Rewritten by voicestream on every start; edits are lost.\n"
            "bind 127.0.0.1\n"
            "protected-mode yes\n"
            f"port {port}\n"
            "daemonize yes\n"
            f"pidfile {_conf_quote(str(self.pid_path))}\n"
            f"logfile {_conf_quote(str(self.log_path))}\n"
            f"dir {_conf_quote(str(self.root))}\n"
            # Durability from the append-only file alone; RDB snapshots would only add
            # fork-and-write pauses for a second copy of the same data.
            "appendonly yes\n"
            "appendfsync everysec\n"
            'save ""\n'
        )
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    # --- lifecycle ---------------------------------------------------------------------

    async def running_port(self, port: int | None) -> int | None:
        """``port`` if our redis-server is running and answering there, else None.

        A live server whose port we no longer know (the state file was lost) is stopped, so
        that it can be restarted on a known port rather than run on unreachable.
        """
        pid = await asyncio.to_thread(self.live_pid)
        if pid is None:
            return None
        if port is None:
            await self._terminate(pid)
            return None
        await self._wait_ready(port, pid, offset=None)
        return port

    async def start(self, preferred_port: int | None) -> int:
        binary = await asyncio.to_thread(self._find_binary)
        for _attempt in range(3):
            port = preferred_port
            if port is None or not await asyncio.to_thread(port_is_free, port):
                port = await asyncio.to_thread(free_port)
            offset = await asyncio.to_thread(self._write_conf, port)
            began = time.monotonic()
            # The parent exits as soon as the daemon has forked; config errors surface here.
            result = await run_command([binary, str(self.conf_path)], time_limit=30, cwd=self.root)
            if result.returncode != 0:
                tail = await asyncio.to_thread(log_tail, self.log_path, offset)
                raise self._error("redis-server failed to start", result.output, tail)
            try:
                await self._wait_ready(port, None, offset=offset)
            except _PortTaken:
                preferred_port = None
                continue
            log.info("started redis-server on 127.0.0.1:%d in %.2fs", port, _since(began))
            return port
        raise EmbeddedServiceError("redis-server could not bind a port after 3 attempts")

    async def stop(self, port: int | None) -> None:
        pid = await asyncio.to_thread(self.live_pid)
        if pid is None:
            return
        began = time.monotonic()
        if port is not None:
            client = _probe_client(port)
            try:
                # NOSAVE: no RDB snapshot; the append-only file is flushed on shutdown anyway.
                await client.shutdown(nosave=True)
            except (RedisError, OSError) as exc:
                log.warning("redis SHUTDOWN failed (%s); sending SIGTERM", exc)
            finally:
                await client.aclose()
        if not await wait_pid_gone(pid, _STOP_TIMEOUT_S):
            await self._terminate(pid)
        log.info("stopped redis-server in %.2fs", _since(began))

    async def _terminate(self, pid: int) -> None:
        await asyncio.to_thread(signal_pid, pid, signal.SIGTERM, "redis-server")
        if not await wait_pid_gone(pid, _STOP_TIMEOUT_S):
            await asyncio.to_thread(signal_pid, pid, signal.SIGKILL, "redis-server")
            await wait_pid_gone(pid, 5)

    async def _wait_ready(self, port: int, pid: int | None, *, offset: int | None) -> None:
        """PING until it answers. Raises _PortTaken when this start lost its port."""
        deadline = time.monotonic() + _READY_TIMEOUT_S
        client = _probe_client(port)
        try:
            while True:
                with contextlib.suppress(RedisError, OSError):
                    if await client.ping():
                        return
                if offset is not None:
                    tail = await asyncio.to_thread(log_tail, self.log_path, offset)
                    if "Address already in use" in tail:
                        raise _PortTaken
                    if "aborting" in tail.lower():
                        raise self._error("redis-server failed to start", "", tail)
                gone = pid is not None and not await asyncio.to_thread(pid_alive, pid)
                if gone or time.monotonic() >= deadline:
                    tail = await asyncio.to_thread(log_tail, self.log_path, offset or 0)
                    what = f"redis-server on 127.0.0.1:{port} is not answering"
                    raise self._error(what, "", tail)
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def _error(self, what: str, output: str, tail: str) -> EmbeddedServiceError:
        return service_failure(what, output, tail, self.log_path)


def _probe_client(port: int) -> Redis:
    # No client-side retries: the callers poll with their own deadline, and built-in
    # backoff would only stretch every probe of a server that is not up yet.
    return Redis(
        host="127.0.0.1",
        port=port,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
        driver_info=DRIVER_INFO,
    )


class _PortTaken(Exception):
    """Another process bound the port between our check and redis-server's bind."""


def _since(began: float) -> float:
    return time.monotonic() - began
