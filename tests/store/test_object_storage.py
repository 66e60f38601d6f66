"""Object storage, both backends the same way: the local data dir, and S3 against a real
S3-compatible server (moto in server mode on 127.0.0.1). Bytes stream both ways, a write is
atomic (a failed one leaves nothing, not even a part), and signed URLs work, expire and refuse
tampering. Then the file rows over it (``store/files.py``): a job's output is one file however
often the job runs, and an upload that fails leaves neither bytes nor row.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from fakes.s3_server import FakeS3, fake_s3_fixture  # noqa: F401  (the fake_s3 fixture)
from fixtures_services import unique_name
from voicestream.config import load_settings
from voicestream.errors import BadRequest, Forbidden, LinkExpired, NotFound, PayloadTooLarge
from voicestream.store import db
from voicestream.store.files import FileStore, StoredJobFiles
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.object_storage import (
    PART_BYTES,
    LocalStorage,
    ObjectStorage,
    UrlSigner,
    open_object_storage,
)

SECRET = "s" * 40


async def _chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _failing(data: bytes) -> AsyncIterator[bytes]:
    async for chunk in _chunks(data):
        yield chunk
    raise ConnectionResetError("the client went away")


async def _read(storage: ObjectStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.open(key)])


@asynccontextmanager
async def _storage(kind: str, tmp_path: Path, s3: FakeS3) -> AsyncIterator[ObjectStorage]:
    overrides: dict[str, object] = {"data_dir": tmp_path}
    if kind == "s3":
        overrides.update(s3.settings(await asyncio.to_thread(s3.new_bucket)))
    async with open_object_storage(load_settings({}, **overrides), SECRET) as storage:
        yield storage


@pytest.fixture(params=["local", "s3"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, fake_s3: FakeS3
) -> AsyncIterator[ObjectStorage]:
    async with _storage(request.param, tmp_path, fake_s3) as opened:
        yield opened


def _leftovers(storage: ObjectStorage, tmp_path: Path, s3: FakeS3) -> list[str]:
    """Everything the backend holds: files (parts included), or S3 objects and open uploads."""
    if isinstance(storage, LocalStorage):
        return [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()]
    client, bucket = s3.client(), storage._bucket  # type: ignore[attr-defined]
    objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [o["Key"] for o in objects] + [f"upload {u['Key']}" for u in uploads]


async def test_bytes_round_trip_in_parts_and_replace_whole(storage: ObjectStorage) -> None:
    # Past one S3 part, so the multipart path is the one taken there.
    big = (b"0123456789abcdef" * (PART_BYTES // 16 + 70_000))[: PART_BYTES * 2 + 12_345]
    assert await storage.put("ws/a", _chunks(big, 1 << 20), "audio/wav") == len(big)
    assert hashlib.sha256(await _read(storage, "ws/a")).digest() == hashlib.sha256(big).digest()
    assert await storage.size("ws/a") == len(big)
    assert await storage.put("ws/a", _chunks(b"short"), "text/plain") == 5
    assert await _read(storage, "ws/a") == b"short"
    await storage.delete("ws/a")
    await storage.delete("ws/a")  # twice: a missing object is no error
    assert await storage.size("ws/a") is None
    with pytest.raises(NotFound):
        await _read(storage, "ws/a")


@pytest.mark.parametrize("size", [1000, PART_BYTES + 1000], ids=["one part", "multipart"])
async def test_a_failed_write_leaves_nothing_and_keeps_the_old_object(
    storage: ObjectStorage, tmp_path: Path, fake_s3: FakeS3, size: int
) -> None:
    await storage.put("ws/kept", _chunks(b"old"), "text/plain")
    before = sorted(_leftovers(storage, tmp_path, fake_s3))
    with pytest.raises(ConnectionResetError):
        await storage.put("ws/kept", _failing(bytes(size)), "text/plain")
    with pytest.raises(ConnectionResetError):
        await storage.put("ws/new", _failing(bytes(size)), "text/plain")
    assert sorted(_leftovers(storage, tmp_path, fake_s3)) == before
    assert await _read(storage, "ws/kept") == b"old"


async def test_s3_presigned_urls_download_and_upload(tmp_path: Path, fake_s3: FakeS3) -> None:
    """(The local backend's URLs are served by the server: tests/server/test_files_api.py.)"""
    async with _storage("s3", tmp_path, fake_s3) as storage:
        await _presigned_round_trip(storage)


async def _presigned_round_trip(storage: ObjectStorage) -> None:
    await storage.put("ws/song", _chunks(b"la la"), "audio/mpeg")
    url = await storage.download_url(
        "ws/song", expires_in=60, filename="Lied über.mp3", content_type="audio/mpeg"
    )
    put_url = await storage.upload_url("ws/up", expires_in=60, content_type="text/plain")
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            assert r.status == 200 and await r.read() == b"la la"
            assert r.headers["Content-Type"] == "audio/mpeg"
            assert "filename*=UTF-8''Lied%20%C3%BCber.mp3" in r.headers["Content-Disposition"]
        async with http.put(put_url, data=b"put", headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 200, await r.text()
    assert await _read(storage, "ws/up") == b"put"


async def test_local_signatures_refuse_tampering_and_expire(tmp_path: Path) -> None:
    signer = UrlSigner(SECRET)
    storage = LocalStorage(tmp_path, signer)
    url = await storage.download_url("ws/f", expires_in=60, filename="a.wav")
    query = dict(parse_qsl(urlsplit(url).query))
    assert storage.verify_download(query).key == "ws/f"
    for name, value in [("key", "ws/other"), ("filename", "b.wav"), ("expires", "9999999999")]:
        with pytest.raises(Forbidden):
            storage.verify_download({**query, name: value})
    with pytest.raises(Forbidden):  # a download signature is no upload signature
        storage.verify_upload({**query, "type": "text/plain"})
    with pytest.raises(Forbidden):  # another server's secret
        LocalStorage(tmp_path, UrlSigner("t" * 40)).verify_download(query)
    with pytest.raises(BadRequest):
        storage.verify_download({"key": "ws/f"})
    past = {"key": "ws/f", "expires": str(int(time.time()) - 1)}
    with pytest.raises(LinkExpired):
        storage.verify_download({**past, "signature": signer.sign("get", past)})


# --- file rows over storage -------------------------------------------------------------------


async def _workspace(pool: db.Pool) -> uuid.UUID:
    key, _ = await ApiKeyRepository(pool).create(workspace=unique_name("files"), role="owner")
    return key.workspace_id


async def _job(pool: db.Pool, workspace_id: uuid.UUID) -> uuid.UUID:
    job_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO jobs (id, workspace_id, type, input, max_attempts) VALUES ($1, $2, $3, $4, 3)",
        job_id,
        workspace_id,
        "tts",
        json.dumps({"text": "hi"}),
    )
    return job_id


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_a_job_output_is_one_file_however_often_the_job_runs(
    db_pool: db.Pool, tmp_path: Path, fake_s3: FakeS3, kind: str
) -> None:
    async with _storage(kind, tmp_path, fake_s3) as storage:
        files = FileStore(db_pool, storage, max_bytes=10_000, url_seconds=60)
        workspace_id = await _workspace(db_pool)
        job_id = await _job(db_pool, workspace_id)
        job_files = StoredJobFiles(files, workspace_id, job_id)
        first = await job_files.save_output(
            "book.mp3", "audio/mpeg", _chunks(b"first run"), format="mp3", duration=1.5
        )
        second = await job_files.save_output(
            "book.mp3", "audio/mpeg", _chunks(b"second"), format="mp3", duration=1.0
        )
        assert first["id"] == second["id"]
        assert (second["bytes"], second["format"], second["duration"]) == (6, "mp3", 1.0)
        rows = await db_pool.fetch("SELECT storage_key FROM files WHERE job_id = $1", job_id)
        assert len(rows) == 1
        record, chunks = await files.open(workspace_id, second["id"])
        assert b"".join([c async for c in chunks]) == b"second"
        assert record.sha256 == hashlib.sha256(b"second").hexdigest()
        # Another workspace's job cannot read it as an input.
        other = StoredJobFiles(files, await _workspace(db_pool), job_id)
        with pytest.raises(NotFound):
            await other.open_input(record.id)


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_a_refused_upload_leaves_no_bytes_and_no_row(
    db_pool: db.Pool, tmp_path: Path, fake_s3: FakeS3, kind: str
) -> None:
    async with _storage(kind, tmp_path, fake_s3) as storage:
        files = FileStore(db_pool, storage, max_bytes=PART_BYTES + 10, url_seconds=60)
        workspace_id = await _workspace(db_pool)
        with pytest.raises(PayloadTooLarge):
            await files.upload(
                workspace_id,
                name="big.bin",
                content_type="application/octet-stream",
                chunks=_chunks(bytes(PART_BYTES + 11), 1 << 20),
            )
        with pytest.raises(ConnectionResetError):
            await files.upload(
                workspace_id, name="cut.bin", content_type="text/plain", chunks=_failing(b"x" * 10)
            )
        count = await db_pool.fetchval(
            "SELECT count(*) FROM files WHERE workspace_id = $1", workspace_id
        )
        assert count == 0
        assert _leftovers(storage, tmp_path, fake_s3) == []
