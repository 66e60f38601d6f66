"""``voicestream batch submit SPEC.json [--wait]``: submit a spec's jobs over the HTTP API.

A spec is JSON: ``{"jobs": [{"type": "tts", "input": {...}}, ...]}`` (optional ``"server"``,
and per job an ``"idempotency_key"`` and ``"name"``; examples in the repository's ``batch/``
folder). Each job is submitted with an Idempotency-Key derived from the spec's bytes and the
job's place in it unless it names its own, so running the same spec again (after a network
failure, say) gives back the same jobs instead of paying twice. With ``--wait`` a progress bar
follows the jobs until they finish, then every result file is downloaded into ``--out``.

The server and key come from ``--server``/``--api-key``, else ``VOICESTREAM_URL`` and
``VOICESTREAM_API_KEY`` (the spec's ``server`` after the flag and before the variable).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO
from urllib.parse import urljoin

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["BatchError", "BatchJob", "BatchSpec", "run_batch"]

FINISHED: Final = ("completed", "failed", "cancelled")
_POLL_S: Final = 0.5
_BAR: Final = 30


class BatchError(Exception):
    """The spec, the server or a job said no; the message says which."""


class BatchJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1, max_length=64)
    input: dict[str, Any] = Field(default_factory=dict)
    name: str | None = Field(None, min_length=1, max_length=200)  # names its downloads
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)


class BatchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server: str | None = None
    jobs: list[BatchJob] = Field(min_length=1, max_length=10_000)


@dataclass(frozen=True)
class _Api:
    session: aiohttp.ClientSession
    base: str
    auth: dict[str, str]  # only ever sent to ``base``: a presigned S3 URL must not get it


@dataclass
class _Tracked:
    spec: BatchJob
    id: str
    status: str = "queued"
    progress: int = 0
    body: dict[str, Any] | None = None


def load_spec(path: Path) -> tuple[BatchSpec, bytes]:
    """Blocking: the spec and its bytes."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BatchError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return BatchSpec.model_validate_json(raw), raw
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise BatchError(f"{path} is not a batch spec: {problems}") from None


async def run_batch(
    spec_path: Path,
    *,
    server: str | None,
    api_key: str,
    wait: bool,
    out_dir: Path,
    stream: TextIO = sys.stderr,
) -> list[dict[str, Any]]:
    """Submit (and with ``wait`` follow and download) a spec's jobs; returns each job as the
    API last showed it. Raises BatchError."""
    spec, raw = await asyncio.to_thread(load_spec, spec_path)
    base = (server or spec.server or "").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise BatchError("no server: pass --server or set VOICESTREAM_URL (http[s]://host:port)")
    digest = hashlib.sha256(raw).hexdigest()[:32]
    headers = {"Authorization": f"Bearer {api_key}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = _Api(session, base, headers)
        tracked = [
            await _submit(api, job, job.idempotency_key or f"batch-{digest}-{i}")
            for i, job in enumerate(spec.jobs)
        ]
        if wait:
            await _follow(api, tracked, stream)
            failed = [t for t in tracked if t.status != "completed"]
            await _download(api, tracked, out_dir, stream)
            if failed:
                names = ", ".join(f"{t.id} ({t.status})" for t in failed)
                raise BatchError(
                    f"{len(failed)} of {len(tracked)} job(s) did not complete: {names}"
                )
        return [t.body or {"id": t.id, "status": t.status} for t in tracked]


async def _answer(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        body = None
    if response.status >= 400 or not isinstance(body, dict):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        message = error.get("message") or (await response.text())[:200]
        raise BatchError(f"{response.method} {response.url.path}: {response.status} {message}")
    return body


async def _submit(api: _Api, job: BatchJob, key: str) -> _Tracked:
    body = {"type": job.type, "input": job.input}
    headers = {**api.auth, "Idempotency-Key": key}
    try:
        async with api.session.post(f"{api.base}/v1/jobs", json=body, headers=headers) as response:
            answer = await _answer(response)
    except aiohttp.ClientError as exc:
        raise BatchError(f"cannot reach {api.base}: {exc}") from None
    return _Tracked(job, answer["id"], answer["status"], answer.get("progress", 0), answer)


async def _follow(api: _Api, tracked: list[_Tracked], stream: TextIO) -> None:
    while True:
        for job in tracked:
            if job.status in FINISHED:
                continue
            try:
                url = f"{api.base}/v1/jobs/{job.id}"
                async with api.session.get(url, headers=api.auth) as response:
                    if response.status >= 500:  # the server is restarting: ask again
                        continue
                    job.body = await _answer(response)
            except aiohttp.ClientError:
                continue
            job.status, job.progress = job.body["status"], job.body["progress"]
        _draw(tracked, stream)
        if all(job.status in FINISHED for job in tracked):
            stream.write("\n")
            return
        await asyncio.sleep(_POLL_S)


def _draw(tracked: list[_Tracked], stream: TextIO) -> None:
    done = sum(job.status in FINISHED for job in tracked)
    percent = sum(100 if job.status in FINISHED else job.progress for job in tracked) / len(tracked)
    filled = round(_BAR * percent / 100)
    failed = sum(job.status in ("failed", "cancelled") for job in tracked)
    note = f", {failed} failed" if failed else ""
    bar = "#" * filled + "-" * (_BAR - filled)
    stream.write(f"\r[{bar}] {percent:5.1f}%  {done}/{len(tracked)} jobs done{note}")
    stream.flush()


async def _download(api: _Api, tracked: list[_Tracked], out_dir: Path, stream: TextIO) -> None:
    for job in tracked:
        files = ((job.body or {}).get("result") or {}).get("files") or []
        for n, entry in enumerate(files):
            url = urljoin(api.base + "/", entry["url"])
            stem = job.spec.name or job.id
            suffix = f"-{n + 1}" if len(files) > 1 else ""
            # An output format names its container first: mp3_44100_128, wav_16000, opus.
            extension = str(entry.get("format") or "bin").split("_")[0]
            target = out_dir / f"{stem}{suffix}.{extension}"
            started = time.monotonic()
            size = await _fetch(api, url, target)
            seconds = time.monotonic() - started
            stream.write(f"downloaded {target} ({size} bytes, {seconds:.1f} s)\n")


async def _fetch(api: _Api, url: str, target: Path) -> int:
    """Stream ``url`` to ``target`` (a temporary name until it is whole)."""
    partial = target.with_name(target.name + ".part")
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    size = 0
    headers = api.auth if url.startswith(api.base + "/") else None
    async with api.session.get(url, headers=headers) as response:
        if response.status >= 400:
            raise BatchError(f"downloading {url}: {response.status}")
        handle = await asyncio.to_thread(partial.open, "wb")
        try:
            async for chunk in response.content.iter_chunked(1 << 16):
                await asyncio.to_thread(handle.write, chunk)
                size += len(chunk)
        finally:
            await asyncio.to_thread(handle.close)
    await asyncio.to_thread(partial.replace, target)
    return size


def dump(jobs: list[dict[str, Any]]) -> str:
    return json.dumps(jobs, indent=2, default=str)
