"""``/v1/files`` through the real server: uploads streamed to storage and back, checked by
their SHA-256; signed download and upload URLs that expire and refuse tampering; another
workspace's file is a 404; past the size limit a 413 that keeps nothing; a dropped upload
leaves neither bytes nor row; a 200 MB upload does not grow the process by more than a few
chunks; and the same API over S3 (moto in server mode) with presigned URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest

from fakes.s3_server import FakeS3, fake_s3_fixture  # noqa: F401  (the fake_s3 fixture)
from helpers import StartedServer, settings_for_test_server, start_test_server
from server.auth_calls import house_error
from server.waiting import eventually
from voicestream.rest.files import FILES
from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository

BOUNDARY = "vs-test-boundary-7d2f"
SMALL_LIMIT = 1024 * 1024


async def _form(
    chunks: AsyncIterator[bytes] | bytes,
    *,
    filename: str = "talk.wav",
    content_type: str = "audio/wav",
    name: str = "file",
    extra: bytes = b"",
) -> AsyncIterator[bytes]:
    """A multipart/form-data body with one part, streamed (``extra``: raw bytes after it)."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    if isinstance(chunks, bytes):
        yield chunks
    else:
        async for chunk in chunks:
            yield chunk
    yield b"\r\n" + extra + f"--{BOUNDARY}--\r\n".encode()


FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def _zeros(total: int, chunk: int = 1024 * 1024) -> AsyncIterator[bytes]:
    block = bytes(chunk)
    sent = 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece


async def _upload(
    http: aiohttp.ClientSession,
    server: StartedServer,
    data: bytes,
    key: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    headers = {**server.headers(key), **FORM}
    async with http.post(f"{server.url}/v1/files", data=_form(data, **kw), headers=headers) as r:
        body = await r.json()
        assert r.status == 201, body
        return dict(body)


async def _get(
    http: aiohttp.ClientSession, server: StartedServer, file_id: str, key: str | None = None
) -> tuple[int, Any]:
    async with http.get(f"{server.url}/v1/files/{file_id}", headers=server.headers(key)) as r:
        return r.status, await r.json()


async def _other_key(server: StartedServer) -> str:
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=f"files-{uuid.uuid4().hex[:8]}", role="owner"
    )
    return key


def _rows(server: StartedServer, workspace_key: str | None = None) -> Any:
    async def count() -> int:
        principal = await ApiKeyRepository(server.app[POOL]).authenticate(
            workspace_key or server.api_key
        )
        return int(
            await server.app[POOL].fetchval(
                "SELECT count(*) FROM files WHERE workspace_id = $1", principal.workspace_id
            )
        )

    return count


def _incoming(server: StartedServer) -> list[str]:
    folder = Path(server.settings.data_dir) / "files" / ".incoming"
    return os.listdir(folder) if folder.exists() else []


# --- the API --------------------------------------------------------------------------------


async def test_an_upload_comes_back_byte_for_byte_through_its_signed_url(server, http) -> None:
    data = os.urandom(300_000)
    created = await _upload(http, server, data, filename="Größe.wav")
    assert (created["bytes"], created["content_type"]) == (len(data), "audio/wav")
    assert created["sha256"] == hashlib.sha256(data).hexdigest()
    status, got = await _get(http, server, created["id"])
    assert status == 200 and got["status"] == "uploaded" and got["name"] == "Größe.wav"
    async with http.get(got["url"]) as r:  # no credential: the signature is one
        assert r.status == 200
        assert hashlib.sha256(await r.read()).hexdigest() == created["sha256"]
        assert r.headers["Content-Type"] == "audio/wav"
        assert "filename*=UTF-8''Gr%C3%B6%C3%9Fe.wav" in r.headers["Content-Disposition"]


async def test_a_signed_upload_url_takes_the_bytes_once(server, http) -> None:
    async with http.post(
        f"{server.url}/v1/files/uploads",
        json={"name": "notes.txt", "content_type": "text/plain"},
        headers=server.headers(),
    ) as r:
        upload = await r.json()
        assert r.status == 201, upload
    status, pending = await _get(http, server, upload["file_id"])
    assert status == 200
    assert (pending["status"], pending["bytes"], pending["url"]) == ("awaiting_upload", None, None)
    headers = upload["headers"]
    async with http.put(upload["upload_url"], data=b"hello notes", headers=headers) as r:
        stored = await r.json()
        assert r.status == 200, stored
    assert stored["sha256"] == hashlib.sha256(b"hello notes").hexdigest()
    async with http.put(upload["upload_url"], data=b"again", headers=headers) as r:
        house_error(await r.json(), "conflict")
        assert r.status == 409
    _, got = await _get(http, server, upload["file_id"])
    async with http.get(got["url"]) as r:
        assert await r.read() == b"hello notes"


async def test_signed_urls_refuse_tampering_and_expire(server, http) -> None:
    created = await _upload(http, server, b"secret words")
    _, got = await _get(http, server, created["id"])
    parts = urlsplit(got["url"])
    query = dict(parse_qsl(parts.query))
    base = f"{server.url}{parts.path}"
    forged = [
        {**query, "signature": "0" * 64},
        {**query, "key": query["key"].rsplit("/", 1)[0] + f"/{uuid.uuid4()}"},
        {**query, "expires": str(int(query["expires"]) + 3600)},
    ]
    for bad in forged:
        async with http.get(f"{base}?{urlencode(bad)}") as r:
            assert r.status == 403, bad
            house_error(await r.json(), "forbidden")
    async with http.get(f"{base}?key={query['key']}") as r:
        assert r.status == 400
        house_error(await r.json(), "bad_request")
    storage = server.app[FILES].storage
    expired = await storage.download_url(query["key"], expires_in=-1)
    async with http.get(f"{server.url}{expired}") as r:
        assert r.status == 410
        house_error(await r.json(), "link_expired")
    put_expired = await storage.upload_url(query["key"], expires_in=-1, content_type="text/plain")
    async with http.put(f"{server.url}{put_expired}", data=b"overwrite?") as r:
        assert r.status == 410
    async with http.get(got["url"]) as r:
        assert await r.read() == b"secret words"


async def test_another_workspace_s_file_is_a_404_like_a_missing_one(server, http) -> None:
    created = await _upload(http, server, b"mine")
    other = await _other_key(server)
    missing = str(uuid.uuid4())
    for file_id in (created["id"], missing, "not-a-uuid"):
        status, body = await _get(http, server, file_id, other)
        assert status == 404
        house_error(body, "not_found")
        async with http.delete(
            f"{server.url}/v1/files/{file_id}", headers=server.headers(other)
        ) as r:
            assert r.status == 404
    status, _ = await _get(http, server, created["id"])
    assert status == 200


async def test_delete_removes_the_row_and_the_bytes(server, http) -> None:
    created = await _upload(http, server, b"short-lived")
    _, got = await _get(http, server, created["id"])
    async with http.delete(f"{server.url}/v1/files/{created['id']}", headers=server.headers()) as r:
        assert r.status == 204
    status, _ = await _get(http, server, created["id"])
    assert status == 404
    async with http.get(got["url"]) as r:  # still signed, but nothing is there
        assert r.status == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "bad_request"),  # not a multipart body at all
        (f"--{BOUNDARY}--\r\n".encode(), 422, "invalid_request"),  # no part
        (None, 400, "bad_request"),  # two parts
        ("name", 400, "bad_request"),  # a part not named file
        ("type", 400, "bad_request"),  # a part type that is no media type
    ],
    ids=["not multipart", "no part", "two parts", "wrong name", "bad type"],
)
async def test_bad_forms_are_refused_and_keep_nothing(
    server, http, body: Any, status: int, code: str
) -> None:
    key = await _other_key(server)
    headers = {**server.headers(key), **FORM}
    if body is None:
        second = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\nb\r\n'
        data: Any = _form(b"a", extra=second.encode())
    elif body == "name":
        data = _form(b"a", name="upload")
    elif body == "type":
        data = _form(b"a", content_type="not a type")
    else:
        data = body
        if not body:
            headers["Content-Type"] = "application/json"
    async with http.post(f"{server.url}/v1/files", data=data, headers=headers) as r:
        assert r.status == status, await r.text()
        house_error(await r.json(), code)
    assert await _rows(server, key)() == 0


async def test_a_download_the_client_abandons_is_no_server_error(server, http) -> None:
    headers = {**server.headers(), **FORM}
    async with http.post(
        f"{server.url}/v1/files", data=_form(_zeros(32 * 1024 * 1024)), headers=headers
    ) as r:
        created = await r.json()
    _, got = await _get(http, server, created["id"])
    async with aiohttp.ClientSession() as other:
        response = await other.get(got["url"])
        assert response.status == 200
        await response.content.read(64 * 1024)
        response.close()  # the connection goes, most of the file unsent
    # The server notices at its next write, lets the file go, and must not log that as its
    # own failure (the autouse log guard).
    key = dict(parse_qsl(urlsplit(got["url"]).query))["key"]
    path = str(Path(server.settings.data_dir) / "files" / key)
    await eventually(lambda: not _open_by_us(path), what="the download's file closed")


def _open_by_us(path: str) -> bool:
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                return True
    return False


async def test_upload_body_is_validated(server, http) -> None:
    for body in ({}, {"name": "a", "content_type": "nonsense"}, {"name": "a", "extra": 1}):
        async with http.post(
            f"{server.url}/v1/files/uploads", json=body, headers=server.headers()
        ) as r:
            assert r.status == 422, body
            house_error(await r.json(), "invalid_request")


async def test_a_dropped_upload_leaves_no_bytes_and_no_row(server) -> None:
    key = await _other_key(server)
    host, port = server.host, server.port
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST /v1/files HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
    )
    writer.write(head.encode())
    async for piece in _form(_zeros(4 * 1024 * 1024)):
        if piece.startswith(b"\r\n"):  # the closing boundary: never sent
            break
        writer.write(piece)
        await writer.drain()
    # The bytes are on their way into storage when the client goes.
    await eventually(lambda: _incoming(server), what="a part file being written")
    writer.close()
    await writer.wait_closed()
    await eventually(lambda: not _incoming(server), what="the part file removed")
    assert await _rows(server, key)() == 0
    del reader


async def test_a_200_mb_upload_streams_in_bounded_memory(server, http) -> None:
    total = 200 * 1024 * 1024
    samples: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(await asyncio.to_thread(_rss))
            await asyncio.sleep(0.02)

    baseline = await asyncio.to_thread(_rss)
    sampler = asyncio.create_task(sample())
    try:
        digest = hashlib.sha256()

        async def counted() -> AsyncIterator[bytes]:
            async for chunk in _zeros(total):
                digest.update(chunk)
                yield chunk

        headers = {**server.headers(), **FORM}
        async with http.post(f"{server.url}/v1/files", data=_form(counted()), headers=headers) as r:
            created = await r.json()
            assert r.status == 201, created
    finally:
        done.set()
        await sampler
    assert created["bytes"] == total and created["sha256"] == digest.hexdigest()
    growth = max(samples) - baseline
    assert growth < 64 * 1024 * 1024, f"RSS grew by {growth / 2**20:.0f} MiB"
    async with http.delete(f"{server.url}/v1/files/{created['id']}", headers=server.headers()) as r:
        assert r.status == 204


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- a small limit --------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def small_server(
    embedded_services, registry, tmp_path_factory
) -> AsyncIterator[StartedServer]:
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("files-small"),
        max_file_bytes=SMALL_LIMIT,
        jobs_worker=False,  # files only: no jobs run here
    )
    async with start_test_server(settings, registry, key_workspace="files-small") as started:
        yield started


async def test_past_the_limit_is_a_413_that_keeps_nothing(small_server, http) -> None:
    server = small_server
    headers = {**server.headers(), **FORM}
    # Chunked: the size shows only as the bytes arrive.
    async with http.post(
        f"{server.url}/v1/files", data=_form(_zeros(SMALL_LIMIT + 1, 64 * 1024)), headers=headers
    ) as r:
        assert r.status == 413
        house_error(await r.json(), "payload_too_large")
    # Declared: refused before a byte is read.
    async with http.post(
        f"{server.url}/v1/files", data=io.BytesIO(bytes(2 * SMALL_LIMIT)), headers=headers
    ) as r:
        assert r.status == 413
    assert await _rows(server)() == 0
    assert _incoming(server) == []
    async with http.post(
        f"{server.url}/v1/files/uploads", json={"name": "big.bin"}, headers=server.headers()
    ) as r:
        upload = await r.json()
    async with http.put(upload["upload_url"], data=_zeros(SMALL_LIMIT + 1, 64 * 1024)) as r:
        assert r.status == 413
    assert _incoming(server) == []
    # The URL still takes a file that fits.
    async with http.put(upload["upload_url"], data=b"fits") as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["bytes"] == 4


# --- S3 ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def s3_server(
    embedded_services, registry, tmp_path_factory, fake_s3: FakeS3
) -> AsyncIterator[StartedServer]:
    bucket = await asyncio.to_thread(fake_s3.new_bucket)
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("files-s3"),
        max_file_bytes=SMALL_LIMIT,
        jobs_worker=False,
        **fake_s3.settings(bucket),
    )
    async with start_test_server(settings, registry, key_workspace="files-s3") as started:
        yield started


def _s3_keys(fake_s3: FakeS3, server: StartedServer) -> list[str]:
    listed = fake_s3.client().list_objects_v2(Bucket=server.settings.s3_bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


async def test_over_s3_uploads_and_downloads_use_presigned_urls(s3_server, http, fake_s3) -> None:
    server = s3_server
    data = os.urandom(200_000)
    created = await _upload(http, server, data)
    _, got = await _get(http, server, created["id"])
    assert got["url"].startswith(fake_s3.endpoint_url)
    async with http.get(got["url"]) as r:
        assert r.status == 200 and await r.read() == data
        assert r.headers["Content-Type"] == "audio/wav"

    async with http.post(
        f"{server.url}/v1/files/uploads",
        json={"name": "direct.txt", "content_type": "text/plain"},
        headers=server.headers(),
    ) as r:
        upload = await r.json()
    assert upload["upload_url"].startswith(fake_s3.endpoint_url)
    async with http.put(
        upload["upload_url"], data=b"straight to S3", headers=upload["headers"]
    ) as r:
        assert r.status == 200, await r.text()
    _, direct = await _get(http, server, upload["file_id"])
    assert (direct["status"], direct["bytes"]) == ("uploaded", 14)

    for file_id in (created["id"], upload["file_id"]):
        async with http.delete(f"{server.url}/v1/files/{file_id}", headers=server.headers()) as r:
            assert r.status == 204
    assert await asyncio.to_thread(_s3_keys, fake_s3, server) == []


async def test_over_s3_past_the_limit_keeps_nothing(s3_server, http, fake_s3) -> None:
    server = s3_server
    headers = {**server.headers(), **FORM}
    async with http.post(
        f"{server.url}/v1/files", data=_form(_zeros(SMALL_LIMIT + 1, 64 * 1024)), headers=headers
    ) as r:
        assert r.status == 413
    assert await _rows(server)() == 0
    assert await asyncio.to_thread(_s3_keys, fake_s3, server) == []
