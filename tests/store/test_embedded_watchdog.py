"""A ``voicestream serve`` that is killed outright (SIGKILL: no shutdown, no lease release)
does not leave its embedded PostgreSQL and redis-server running: its watchdog stops them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from fixtures_services import cli_env, make_data_dir
from server.waiting import eventually_sync
from voicestream.store._proc import pid_alive

CLI = [sys.executable, "-m", "voicestream"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def test_sigkilled_server_takes_its_embedded_services_along() -> None:
    data_dir = make_data_dir("voicestream-watchdog-")
    port = _free_port()
    log_path = data_dir / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [*CLI, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            env=cli_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            # Killing the server must not reach anything of the test's own.
            start_new_session=True,
        )
    try:
        eventually_sync(
            lambda: server.poll() is None and _ready(f"http://127.0.0.1:{port}/readyz"),
            within=120,
            what="server ready",
        )
        pg = _pid(data_dir / "postgres" / "postmaster.pid")
        redis = _pid(data_dir / "redis" / "redis.pid")
        assert pg is not None and pid_alive(pg)
        assert redis is not None and pid_alive(redis)

        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)

        eventually_sync(
            lambda: not pid_alive(pg) and not pid_alive(redis), within=30, what="services stopped"
        )
        # Nothing is left holding the data dir: its lease was dropped as stale.
        assert not os.listdir(data_dir / "run" / "leases")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server_log = log_path.read_text()
        for path in (data_dir / "postgres" / "postmaster.pid", data_dir / "redis" / "redis.pid"):
            pid = _pid(path)
            if pid is not None and pid_alive(pid):  # the test failed: do not leak daemons
                os.kill(pid, signal.SIGKILL)
        postgres = data_dir / "postgres"
        if postgres.is_symlink():
            shutil.rmtree(postgres.resolve(), ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    assert "Traceback" not in server_log, server_log
