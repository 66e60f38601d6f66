"""Process, port and log helpers for the embedded services.

Functions documented as blocking touch the file system or ``/proc`` and are meant to be run
with ``asyncio.to_thread``; the coroutines never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from voicestream.store._errors import EmbeddedServiceError

__all__ = [
    "Account",
    "CommandResult",
    "free_port",
    "log_tail",
    "pid_alive",
    "port_is_free",
    "process_name",
    "process_start_time",
    "run_command",
    "signal_pid",
    "wait_pid_gone",
]

_LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Account:
    """An unprivileged user to run a service as, because we are root and it refuses root."""

    uid: int
    gid: int
    name: str

    @classmethod
    def by_name(cls, name: str) -> Account:
        """Blocking. Raises EmbeddedServiceError when the user does not exist."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise EmbeddedServiceError(
                f"running as root, PostgreSQL must run as an unprivileged user, but there is no "
                f"{name!r} user; create it or run voicestream as a normal user"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name)

    @classmethod
    def by_uid(cls, uid: int, gid: int) -> Account:
        """Blocking."""
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return cls(uid, gid, name)

    def command_prefix(self) -> list[str]:
        """Blocking. argv prefix that runs the rest of the command line as this account.

        A command prefix rather than ``create_subprocess_exec(user=...)`` because uvloop
        rejects the ``user``/``group`` arguments. setpriv execs in place (no PAM session, no
        extra parent process); runuser is the fallback where util-linux is older.
        """
        setpriv = shutil.which("setpriv")
        if setpriv:
            return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--"]
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", self.name, "--"]
        raise EmbeddedServiceError(
            f"running as root, PostgreSQL must run as {self.name!r}, but neither setpriv nor "
            "runuser (util-linux) is installed"
        )


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    output: str  # stdout and stderr interleaved


async def run_command(
    argv: Sequence[str],
    *,
    time_limit: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run a short-lived command to completion, killing it on timeout or cancellation.

    Spawned with ``subprocess.Popen`` in a worker thread, not ``create_subprocess_exec``:
    uvloop (the server's loop) ignores ``close_fds`` and leaks its stdio duplicates and every
    inheritable descriptor into the child, and the daemons these commands start (postmaster,
    redis-server) would hold them for life; a leaked output pipe made ``pg_ctl start`` never
    reach EOF. Exit is awaited by polling ``poll()`` (a WNOHANG waitpid), so the loop never
    blocks and cancellation still kills the command. Output goes to an anonymous file rather
    than a pipe for the same reason: nothing to wait on once the command itself has exited.
    The command gets its own session, so a daemon it spawns never shares our process group
    (a Ctrl-C aimed at us must not reach services that other processes still lease).
    """
    out = await asyncio.to_thread(tempfile.TemporaryFile)
    try:
        proc = await asyncio.to_thread(
            subprocess.Popen,
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            close_fds=True,
            start_new_session=True,
        )
        try:
            await _wait_exit(proc, time_limit, argv[0])
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.to_thread(proc.wait)
            raise
        output = await asyncio.to_thread(_read_from_start, out)
    finally:
        out.close()
    return CommandResult(proc.returncode, output)


async def _wait_exit(proc: subprocess.Popen[bytes], time_limit: float, name: str) -> None:
    deadline = time.monotonic() + time_limit
    delay = 0.002
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{name} did not finish within {time_limit:.0f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


def _read_from_start(fh: IO[bytes]) -> str:
    fh.seek(0)
    return fh.read().decode("utf-8", "replace")


def free_port() -> int:
    """Blocking. A port the kernel considers free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Blocking. Whether a server could listen on 127.0.0.1:``port``.

    SO_REUSEADDR mirrors what PostgreSQL and Redis set, so a port whose old connections
    linger in TIME_WAIT after a restart still counts as free and keeps its number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_LOCALHOST, port))
        except OSError:
            return False
    return True


def _proc_stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ")".
    return raw[raw.rfind(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """Blocking. Whether ``pid`` is a running process; zombies count as dead.

    The zombie check matters in containers whose PID 1 does not reap orphans: a stopped
    daemon would otherwise look alive forever.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    fields = _proc_stat_fields(pid)
    return not (fields and fields[0] in ("Z", "X"))


def process_start_time(pid: int) -> int | None:
    """Blocking. Start time of ``pid`` in clock ticks since boot (Linux), to detect pid reuse."""
    fields = _proc_stat_fields(pid)
    if not fields or len(fields) < 20:
        return None
    try:
        return int(fields[19])  # field 22 of /proc/<pid>/stat; fields[0] is field 3
    except ValueError:
        return None


def process_name(pid: int) -> str | None:
    """Blocking. The kernel's short command name of ``pid``, None where /proc is unavailable."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def signal_pid(pid: int, sig: signal.Signals, expected_name: str) -> None:
    """Blocking. Signal ``pid`` only if it still looks like the process we started.

    The name check keeps a stale pid file from making us kill an unrelated process that
    happens to have reused the pid.
    """
    name = process_name(pid)
    if name is not None and not name.startswith(expected_name):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


async def wait_pid_gone(pid: int, within: float) -> bool:
    """Poll until ``pid`` has exited; True if it did within ``within`` seconds."""
    deadline = time.monotonic() + within
    while await asyncio.to_thread(pid_alive, pid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def log_tail(path: Path, start: int = 0, max_lines: int = 30) -> str:
    """Blocking. The last lines of a log written since byte offset ``start``."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(start if start <= size else 0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-max_lines:])
