"""``voicestream serve`` as a user runs it: nothing configured, embedded PostgreSQL and Redis
under the data dir, a key from ``voicestream keys create``, real speech back and forth, and a
clean stop that takes the embedded services down with it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from helpers import corpus_wer
from voicestream.store._proc import pid_alive

CLI = [sys.executable, "-m", "voicestream"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICESTREAM_")}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return env


def _request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.headers, r.read()


def test_serve_with_nothing_configured(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = _free_port()
    log = (tmp_path / "server.log").open("w+")  # closed at the end of the test
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _request(f"{base}/readyz")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert proc.poll() is None, "server exited during start-up"
            assert time.monotonic() < deadline, "server not ready within 120 s"
            time.sleep(0.3)

        # A second process with the same data dir finds the same embedded services.
        created = subprocess.run(
            [*CLI, "keys", "create", "--data-dir", str(data_dir), "--workspace", "demo"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        key = created.stdout.strip().splitlines()[-1]
        auth = {"Authorization": f"Bearer {key}"}

        text = "Please turn off the lights when you leave."
        status, headers, audio = _request(
            f"{base}/v1/tts",
            json.dumps({"text": text, "format": "wav_16000"}).encode(),
            {**auth, "Content-Type": "application/json"},
        )
        assert status == 200 and headers["Content-Type"] == "audio/wav"
        status, _, body = _request(f"{base}/v1/stt", audio, auth)
        result = json.loads(body)
        assert corpus_wer([text], [result["text"]]) <= 0.2, result

        services = json.loads((data_dir / "run" / "services.json").read_text())
        assert services  # ports recorded for other processes
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        log.seek(0)
        server_log = log.read()
        log.close()
    assert rc == 0, server_log
    assert "Traceback" not in server_log, server_log
    # The server held the only lease: its embedded PostgreSQL is gone with it.
    pg_dir = data_dir / "postgres"
    pg_pid_file = pg_dir / "postmaster.pid"
    if pg_pid_file.exists():
        pid = int(pg_pid_file.read_text().splitlines()[0])
        assert not pid_alive(pid), "embedded PostgreSQL outlived the server"
    if pg_dir.is_symlink():
        # As root under a private tmp dir the cluster lives outside the data dir; tidy it.
        shutil.rmtree(pg_dir.resolve(), ignore_errors=True)
