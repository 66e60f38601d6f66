"""The cross-process lock and the lease files that decide how long embedded services live.

Every process using the services of one data dir holds a lease file ``run/leases/<pid>``;
the services are stopped when the last live lease goes away. A lease whose process is dead
(or whose pid now belongs to a different process) is stale and is removed on sight, so a
crashed server never keeps the services pinned forever once anyone acquires or releases.

All functions except ``DirLock`` are blocking and must only be called with the lock held.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from voicestream.store._errors import EmbeddedServiceError
from voicestream.store._proc import pid_alive, process_start_time

__all__ = ["ALL_SERVICES", "DirLock", "add_lease", "live_needs", "remove_lease"]

ALL_SERVICES = frozenset({"postgres", "redis"})


class DirLock:
    """Exclusive ``flock`` on a file, usable as ``async with``.

    flock (unlike POSIX record locks) is per open file, so two users inside one process
    exclude each other too. It is taken by polling with LOCK_NB: waiting never blocks the
    event loop, and a cancelled waiter cannot end up owning the lock later, which a
    blocking flock in a worker thread could.
    """

    def __init__(self, path: Path, *, timeout: float = 180.0) -> None:
        self._path = path
        self._timeout = timeout
        self._fd: int | None = None

    async def __aenter__(self) -> DirLock:
        fd = await asyncio.to_thread(os.open, self._path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self._timeout
        delay = 0.01
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EmbeddedServiceError(
                            f"timed out after {self._timeout:.0f}s waiting for {self._path}; "
                            "another process is starting or stopping the services"
                        ) from None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.1)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing drops the flock; unlock first anyway so the release cannot be delayed
            # by a duplicate of the descriptor (none should exist: it is not inheritable).
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _lease_path(leases_dir: Path) -> Path:
    return leases_dir / str(os.getpid())


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # atomic, so a reader never sees half a lease


def add_lease(leases_dir: Path, token: str, services: Iterable[str]) -> None:
    """Record that this process holds lease ``token`` on ``services``."""
    path = _lease_path(leases_dir)
    data = _read(path) or {}
    held = data.get("leases")
    leases = dict(held) if isinstance(held, dict) else {}
    leases[token] = sorted(services)
    _write(
        path,
        {"pid": os.getpid(), "start_time": process_start_time(os.getpid()), "leases": leases},
    )


def remove_lease(leases_dir: Path, token: str) -> None:
    """Drop lease ``token`` of this process, and the file with its last lease."""
    path = _lease_path(leases_dir)
    data = _read(path)
    held = data.get("leases") if data else None
    leases = dict(held) if isinstance(held, dict) else {}
    leases.pop(token, None)
    if leases and data is not None:
        _write(path, {**data, "leases": leases})
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _is_live(pid: int, data: dict[str, object] | None) -> bool:
    if not pid_alive(pid):
        return False
    recorded = data.get("start_time") if data else None
    if isinstance(recorded, int):
        current = process_start_time(pid)
        if current is not None and current != recorded:
            return False  # the pid was reused by a different process
    return True


def live_needs(leases_dir: Path) -> set[str]:
    """Remove stale leases; return the services that the remaining live leases need."""
    needs: set[str] = set()
    for entry in leases_dir.iterdir():
        if not entry.name.isdigit():
            continue  # temp files and anything we did not write
        data = _read(entry)
        if not _is_live(int(entry.name), data):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            continue
        held = data.get("leases") if data else None
        if not isinstance(held, dict):
            needs |= ALL_SERVICES  # unreadable lease of a live process: keep everything up
            continue
        for services in held.values():
            if isinstance(services, list):
                needs.update(s for s in services if s in ALL_SERVICES)
    return needs
