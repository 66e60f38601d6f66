"""Stop a data dir's embedded services when the process that leased them dies unannounced.

A server that is killed (SIGKILL, the OOM killer) never releases its lease, and the
daemonized PostgreSQL and redis-server it started would run on, unowned, until some other
process happened to use the data dir. Neither can be told to follow its parent (redis has no
such option, and ``PR_SET_PDEATHSIG`` in a ``preexec_fn`` is unsafe in a threaded process and
fires when the forking *thread* ends). So the server starts this watchdog beside them::

    python -m voicestream.store.watchdog <data_dir> <server_pid>

It waits for the server to exit, then stops whatever no live lease needs any more (another
process using the same services keeps them). It runs in its own session, so a signal aimed at
the server's process group does not take it along. A server that stops normally releases
its lease itself and terminates the watchdog on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from voicestream.store._errors import EmbeddedServiceError
from voicestream.store._proc import pid_alive, process_start_time
from voicestream.store.embedded import EmbeddedServices

__all__ = ["start_watchdog", "stop_watchdog"]

log = logging.getLogger("voicestream.store.watchdog")

_POLL_S = 0.2


def _wait_for_exit(pid: int) -> None:
    """Blocking: return once ``pid`` has exited (or was replaced by another process)."""
    started = process_start_time(pid)
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):  # gone already, or a kernel before 5.3
        fd = None
    if fd is not None:
        try:
            # A pidfd becomes readable when the process exits: no polling, no pid reuse race.
            select.select([fd], [], [])
            return
        finally:
            os.close(fd)
    while pid_alive(pid) and process_start_time(pid) == started:
        time.sleep(_POLL_S)


def _run(data_dir: Path, pid: int) -> int:
    _wait_for_exit(pid)
    log.warning("process %d exited without releasing %s; stopping its services", pid, data_dir)
    try:
        asyncio.run(EmbeddedServices(data_dir).stop_orphaned())
    except EmbeddedServiceError as exc:
        log.warning("%s", exc)
        return 1
    return 0


def start_watchdog(data_dir: Path) -> subprocess.Popen[bytes]:
    """Blocking. Start the watchdog for this process's lease on ``data_dir``."""
    return subprocess.Popen(
        [sys.executable, "-m", "voicestream.store.watchdog", str(data_dir), str(os.getpid())],
        stdin=subprocess.DEVNULL,
        close_fds=True,
        # Not in our process group: whatever kills the group must not kill the watchdog.
        start_new_session=True,
    )


def stop_watchdog(proc: subprocess.Popen[bytes]) -> None:
    """Blocking. End the watchdog of a lease that was released normally."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m voicestream.store.watchdog <data_dir> <pid>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="voicestream watchdog: %(message)s")
    return _run(Path(argv[0]), int(argv[1]))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
