"""Benchmark harness: a real ``voicestream serve`` subprocess with its own data dir and key.

The server runs in its own process, so the client's timing never shares the server's event loop
or GIL; it runs exactly what ``make dev`` runs (embedded PostgreSQL and Redis included).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VOICESTREAM = [sys.executable, "-m", "voicestream"]


@dataclass(frozen=True)
class Server:
    url: str
    ws_url: str
    api_key: str
    pid: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="vs-bench-") as tmp:
        port = _free_port()
        env = {**os.environ, "VOICESTREAM_LOG_LEVEL": "WARNING", **(extra_env or {})}
        args = ["--data-dir", tmp]
        key = (
            subprocess.run(
                [*VOICESTREAM, "keys", "create", "--workspace", "bench", *args],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        proc = subprocess.Popen([*VOICESTREAM, "serve", "--port", str(port), *args], env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not become ready")
                time.sleep(0.2)
            yield Server(url, f"ws://127.0.0.1:{port}", key, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0}
    a = np.asarray(values)
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "n": len(values),
    }


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def write_result(name: str, data: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    body = json.dumps({"benchmark": name, "machine": machine(), **data}, indent=2)
    path.write_text(body)
    (RESULTS / f"{name}-latest.json").write_text(body)
    return path
