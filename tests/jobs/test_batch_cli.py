"""``voicestream batch submit SPEC.json [--wait]`` as a user runs it, against the session
server (its in-process worker runs the jobs): jobs submitted, followed to the end with a
progress bar, result files downloaded, and the same spec again gives back the same jobs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fixtures_services import cli_env, make_data_dir, run_cli
from jobs.sample_job_types import ECHO, FLAKY


def _env(server: Any) -> dict[str, str]:
    return cli_env(VOICESTREAM_URL=server.url, VOICESTREAM_API_KEY=server.api_key)


async def _spec(directory: Path, jobs: list[dict[str, Any]]) -> Path:
    path = directory / "spec.json"
    await asyncio.to_thread(path.write_text, json.dumps({"jobs": jobs}))
    return path


async def test_a_spec_is_submitted_followed_and_downloaded(server) -> None:
    work = await asyncio.to_thread(make_data_dir, "voicestream-batch-")
    spec = await _spec(
        work,
        [
            {"type": ECHO, "input": {"text": "first", "steps": 2}},
            {"type": ECHO, "input": {"text": "second"}},
            {
                "name": "hello",
                "type": "tts",
                "input": {"text": "Hello.", "voice": "slt", "format": "wav_16000"},
            },
        ],
    )
    out = work / "out"
    result = await run_cli(
        "batch", "submit", str(spec), "--wait", "--out", str(out), env=_env(server)
    )
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)
    assert [j["status"] for j in jobs] == ["completed"] * 3, jobs
    assert [j["result"].get("echo") for j in jobs[:2]] == ["first", "second"]
    assert "100.0%" in result.stderr and "3/3 jobs done" in result.stderr
    downloaded = await asyncio.to_thread(lambda: sorted(p.name for p in out.iterdir()))
    assert downloaded == ["hello.wav"], downloaded
    audio = await asyncio.to_thread((out / "hello.wav").read_bytes)
    assert audio[:4] == b"RIFF" and len(audio) == jobs[2]["result"]["files"][0]["bytes"]
    # The same spec again: the same jobs (Idempotency-Key from the spec), nothing new run.
    again = await run_cli("batch", "submit", str(spec), env=_env(server))
    assert again.returncode == 0, again.stderr
    assert [j["id"] for j in json.loads(again.stdout)] == [j["id"] for j in jobs]


async def test_a_failed_job_fails_the_command(server) -> None:
    work = await asyncio.to_thread(make_data_dir, "voicestream-batch-")
    spec = await _spec(work, [{"type": FLAKY, "input": {"fail_times": 0, "permanent": True}}])
    result = await run_cli("batch", "submit", str(spec), "--wait", env=_env(server))
    assert result.returncode == 1
    assert "1 of 1 job(s) did not complete" in result.stderr


async def test_bad_specs_and_settings_are_refused(server) -> None:
    work = await asyncio.to_thread(make_data_dir, "voicestream-batch-")
    spec = await _spec(work, [{"type": "no.such.type", "input": {}}])
    result = await run_cli("batch", "submit", str(spec), env=_env(server))
    assert result.returncode == 1 and "unknown job type" in result.stderr
    await asyncio.to_thread((work / "bad.json").write_text, '{"jobs": []}')
    result = await run_cli("batch", "submit", str(work / "bad.json"), env=_env(server))
    assert result.returncode == 1 and "is not a batch spec" in result.stderr
    result = await run_cli("batch", "submit", str(spec), env=cli_env(VOICESTREAM_URL=server.url))
    assert result.returncode == 2 and "no API key" in result.stderr
