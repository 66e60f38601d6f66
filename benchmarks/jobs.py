"""Jobs: queue latency and throughput, and a long transcription's wall time and peak memory.

1. Queue: ``--latency-samples`` jobs one at a time, then ``--jobs`` at once, of the tests'
   ``test.sleep`` type (``--job-seconds`` each, a job
   that waits rather than computes, so what is measured is the queue, not an engine) submitted
   at once over ``POST /v1/jobs``, against a ``voicestream serve`` whose in-process worker runs
   1, then 4 jobs at a time (``VOICESTREAM_JOBS_CONCURRENCY``; the same worker code a
   ``voicestream worker --concurrency N`` process runs). Submit → running latency is the job
   row's ``started_at - created_at`` (both stamped by PostgreSQL, so no client clock is in
   it), on an idle queue (dispatch: outbox relay, stream, worker) and within the burst
   (mostly waiting for a free worker); throughput is the burst's jobs completed per second
   from its first submission to its last completion. The 4-worker figure is also given as a
   ratio to the 1-worker one in the same run.
2. Transcription: ``--minutes`` of speech (flite ``slt`` sentences from tests/data, with
   pauses, repeated) uploaded as a 16 kHz WAV over ``POST /v1/files`` and transcribed by a
   ``transcription`` job: wall time from submission to completion, the real-time factor, and
   the server's peak RSS during the job against its RSS before (``/proc/<pid>/status``), the
   figure that shows the job holds a bounded window of audio, not the whole file. The default
   is a few minutes so it runs anywhere; ``--minutes 60`` gives the issue's one-hour figure.

Figures print and land in benchmarks/results/jobs-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import wave
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from harness import ROOT, Server, percentiles, running_server, write_result
from speakers import ROBOTIC, SAMPLE_RATE, speak

SAMPLE_TYPES = "jobs.sample_job_types"  # tests/jobs/sample_job_types.py
MIB = 1024 * 1024
JOB_TIMEOUT_S = 600.0


def _server_env(concurrency: int) -> dict[str, str]:
    tests = str(ROOT / "tests")
    path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PYTHONPATH": path,
        "VOICESTREAM_JOB_TYPE_MODULES": SAMPLE_TYPES,
        "VOICESTREAM_JOBS_CONCURRENCY": str(concurrency),
        # Poll the queue often: the latency measured is the queue's, not a poll interval's.
        "VOICESTREAM_JOBS_POLL_SECONDS": "0.05",
        # The client submits a burst; what is measured is the queue, not the rate limiter.
        "VOICESTREAM_RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
        "VOICESTREAM_RATE_LIMIT_BURST": "100000",
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_done(
    s: aiohttp.ClientSession, server: Server, headers: dict[str, str], job_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        async with s.get(f"{server.url}/v1/jobs/{job_id}", headers=headers) as r:
            r.raise_for_status()
            job: dict[str, Any] = await r.json()
        if job["status"] in ("completed", "failed", "cancelled"):
            if job["status"] != "completed":
                raise RuntimeError(f"job {job_id} ended {job['status']}: {job['error']}")
            return job
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {job['status']} after {JOB_TIMEOUT_S} s")
        await asyncio.sleep(0.05)


async def wait_all(
    s: aiohttp.ClientSession, server: Server, headers: dict[str, str], ids: set[str]
) -> list[dict[str, Any]]:
    """Every job of ``ids`` once completed, from the list endpoint (one request a poll, so
    the polling does not load the server it measures)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    url = f"{server.url}/v1/jobs"
    while True:
        async with s.get(
            url, params={"status": "queued,running", "limit": "1"}, headers=headers
        ) as r:
            r.raise_for_status()
            if not (await r.json())["data"]:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs still unfinished after {JOB_TIMEOUT_S} s")
        await asyncio.sleep(0.05)
    done: list[dict[str, Any]] = []
    params = {"limit": "100"}
    while True:
        async with s.get(url, params=params, headers=headers) as r:
            r.raise_for_status()
            page = await r.json()
        done += [j for j in page["data"] if j["id"] in ids]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    failed = [j for j in done if j["status"] != "completed"]
    if failed or len(done) != len(ids):
        raise RuntimeError(f"{len(failed)} job(s) did not complete, {len(done)}/{len(ids)} seen")
    return done


def _waits(jobs: list[dict[str, Any]]) -> list[float]:
    """Each job's submit → running time, ms, from the row's own (PostgreSQL) timestamps."""
    return [
        (
            datetime.fromisoformat(j["started_at"]) - datetime.fromisoformat(j["created_at"])
        ).total_seconds()
        * 1000
        for j in jobs
    ]


async def queue_run(server: Server, jobs: int, job_seconds: float, samples: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    body = {"type": "test.sleep", "input": {"seconds": job_seconds, "tick": job_seconds}}
    async with aiohttp.ClientSession() as s:

        async def submit() -> str:
            async with s.post(f"{server.url}/v1/jobs", json=body, headers=headers) as r:
                r.raise_for_status()
                job_id: str = (await r.json())["id"]
                return job_id

        await wait_done(s, server, headers, await submit())  # warm: first query plans, pools
        idle = [await wait_done(s, server, headers, await submit()) for _ in range(samples)]
        start = time.perf_counter()
        ids = await asyncio.gather(*(submit() for _ in range(jobs)))
        done = await wait_all(s, server, headers, set(ids))
        elapsed = time.perf_counter() - start
    return {
        "jobs": jobs,
        "job_seconds": job_seconds,
        # One job at a time on an idle queue: what dispatch itself costs.
        "submit_to_running_idle_ms": percentiles(_waits(idle)),
        # The burst: mostly time spent waiting for a free worker.
        "submit_to_running_burst_ms": percentiles(_waits(done)),
        "throughput_jobs_per_s": jobs / elapsed,
        "ideal_jobs_per_s": None,  # filled in by the caller, which knows the concurrency
    }


def long_speech(path: Path, minutes: float) -> float:
    """``minutes`` of flite speech with pauses, as 16 kHz mono WAV at ``path``; its seconds."""
    sentences = (ROOT / "tests" / "data" / "sentences.txt").read_text().split("\n")
    pause = b"\0\0" * (SAMPLE_RATE // 2)
    block = b"".join(speak(ROBOTIC, line) + pause for line in sentences if line.strip())
    target = int(minutes * 60 * SAMPLE_RATE) * 2
    written = 0
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        while written < target:
            piece = block[: target - written]
            w.writeframes(piece)
            written += len(piece)
    return written / 2 / SAMPLE_RATE


async def transcription_run(server: Server, audio: Path, seconds: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with aiohttp.ClientSession() as s:
        with audio.open("rb") as f:
            form = aiohttp.FormData()
            form.add_field("file", f, filename="long.wav", content_type="audio/wav")
            async with s.post(f"{server.url}/v1/files", data=form, headers=headers) as r:
                r.raise_for_status()
                file_id = (await r.json())["id"]
        baseline = rss_mib(server.pid)
        peak = baseline
        body = {"type": "transcription", "input": {"file_id": file_id, "language": "en"}}
        start = time.perf_counter()
        async with s.post(f"{server.url}/v1/jobs", json=body, headers=headers) as r:
            r.raise_for_status()
            job_id = (await r.json())["id"]
        waiter = asyncio.create_task(wait_done(s, server, headers, job_id))
        while not waiter.done():
            peak = max(peak, rss_mib(server.pid))
            await asyncio.wait({waiter}, timeout=0.2)
        job = waiter.result()
        wall = time.perf_counter() - start
    words = len(job["result"].get("text", "").split()) if job["result"] else 0
    return {
        "audio_seconds": seconds,
        "wall_s": wall,
        "real_time_factor": wall / seconds,
        "server_rss_before_mib": baseline,
        "server_rss_peak_mib": peak,
        "server_rss_growth_mib": peak - baseline,
        "words": words,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per queue run")
    parser.add_argument("--job-seconds", type=float, default=0.1, help="each sleep job's length")
    parser.add_argument(
        "--latency-samples", type=int, default=50, help="jobs submitted one at a time"
    )
    parser.add_argument("--minutes", type=float, default=3.0, help="transcription length")
    parser.add_argument("--skip-transcription", action="store_true")
    args = parser.parse_args()
    # The servers' ``python -m`` puts their working directory first on sys.path, where this
    # file, run from benchmarks/, would shadow the tests' ``jobs`` package.
    os.chdir(ROOT)

    queue: dict[str, Any] = {}
    for concurrency in (1, 4):
        with running_server(_server_env(concurrency)) as server:
            run = asyncio.run(queue_run(server, args.jobs, args.job_seconds, args.latency_samples))
        run["ideal_jobs_per_s"] = concurrency / args.job_seconds
        queue[f"workers_{concurrency}"] = run
        idle, burst = run["submit_to_running_idle_ms"], run["submit_to_running_burst_ms"]
        print(
            f"{concurrency} worker(s): submit→running idle p50 {idle['p50']:.0f} ms, "
            f"p99 {idle['p99']:.0f} ms; in a burst of {args.jobs} p50 {burst['p50']:.0f} ms, "
            f"p99 {burst['p99']:.0f} ms; {run['throughput_jobs_per_s']:.1f} jobs/s "
            f"(ideal {run['ideal_jobs_per_s']:.0f})"
        )
    speedup = (
        queue["workers_4"]["throughput_jobs_per_s"] / queue["workers_1"]["throughput_jobs_per_s"]
    )
    print(f"throughput 4 workers / 1 worker: {speedup:.2f}x")
    result: dict[str, Any] = {
        "worker": "in-process (voicestream serve, VOICESTREAM_JOBS_CONCURRENCY)",
        "queue": queue,
        "throughput_ratio_4_to_1": speedup,
    }

    if not args.skip_transcription:
        with tempfile.TemporaryDirectory(prefix="vs-bench-audio-") as tmp:
            audio = Path(tmp) / "long.wav"
            seconds = long_speech(audio, args.minutes)
            with running_server(_server_env(1)) as server:
                t = asyncio.run(transcription_run(server, audio, seconds))
            t["audio_bytes"] = audio.stat().st_size
        result["transcription"] = t
        print(
            f"transcription of {seconds / 60:.1f} min: {t['wall_s']:.1f} s wall "
            f"(RTF {t['real_time_factor']:.2f}), server RSS {t['server_rss_before_mib']:.0f} → "
            f"peak {t['server_rss_peak_mib']:.0f} MiB (+{t['server_rss_growth_mib']:.0f}), "
            f"{t['words']} words"
        )
    print(f"wrote {write_result('jobs', result)}")


if __name__ == "__main__":
    sys.exit(main())
