"""``voicestream serve`` in a child process, for what an in-process server cannot show: a crash
of the whole process, and what it leaves behind (its embedded PostgreSQL and Redis)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from voicestream.store._postgres import EmbeddedPostgres
from voicestream.store._proc import pid_alive
from voicestream.store._redis_server import EmbeddedRedis

CLI = [sys.executable, "-m", "voicestream"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any voicestream setting or service URL, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTREAM_")}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(settings)
    return env


def request(
    url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.headers, r.read()


class ServedProcess:
    """One ``voicestream serve`` on a data dir, its output in ``log_path``."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = env
        self._log: IO[str] = log_path.open("a+")
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(self.port), "--data-dir", str(data_dir)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def wait_ready(self, within: float = 120) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                if request(f"{self.base}/readyz")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            assert self.proc.poll() is None, f"server exited during start-up:\n{self.log()}"
            assert time.monotonic() < deadline, f"not ready within {within} s:\n{self.log()}"
            time.sleep(0.3)

    def create_key(self) -> str:
        """A key from ``voicestream keys create``: a second process on the same services."""
        created = subprocess.run(
            [*CLI, "keys", "create", "--data-dir", str(self.data_dir), "--workspace", "demo"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return created.stdout.strip().splitlines()[-1]

    def tts(self, key: str, text: str, fmt: str, voice: str = "slt") -> bytes:
        body = json.dumps({"text": text, "format": fmt, "voice": voice}).encode()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        status, _, audio = request(f"{self.base}/v1/tts", body, headers)
        assert status == 200
        return audio

    def service_pids(self) -> dict[str, int]:
        """The embedded services running for this data dir right now, by name."""
        found = {
            "postgres": EmbeddedPostgres(self.data_dir / "postgres").live_pid(),
            "redis": EmbeddedRedis(self.data_dir / "redis").live_pid(),
        }
        return {name: pid for name, pid in found.items() if pid is not None}

    def stop(self, sig: signal.Signals = signal.SIGTERM, within: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=within)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()


def wait_pids_gone(pids: Mapping[str, int], within: float) -> list[str]:
    """Poll until every pid has exited; the names of those still alive at the deadline."""
    deadline = time.monotonic() + within
    while True:
        alive = [name for name, pid in pids.items() if pid_alive(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)
