"""Bytes at rest: uploaded files and job outputs, streamed both ways, never whole in memory.

Two backends behind one ``ObjectStorage`` protocol:

- ``LocalStorage`` (the default): files under ``<data_dir>/files``. A write goes to a temporary
  file beside them and is renamed into place once complete and flushed, so a reader sees the
  whole object or none. URLs point at this server (``/v1/files/signed/…``) and carry an
  HMAC-SHA256 signature, under a key derived from the server's secret, over what they allow
  and until when; ``verify_download`` / ``verify_upload`` check them.
- ``S3Storage`` (``VOICESTREAM_S3_BUCKET``): any S3-compatible store through aioboto3. A write
  is a multipart upload completed only at the end (a single PUT when it fits in one part) and
  aborted on failure; URLs are the store's own presigned GET and PUT.

A failed or abandoned ``put`` leaves nothing behind in either backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote, urlencode

from ..config import Settings
from ..errors import BadRequest, Forbidden, LinkExpired, NotFound

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = [
    "DOWNLOAD_PATH",
    "UPLOAD_PATH",
    "LocalStorage",
    "ObjectStorage",
    "S3Storage",
    "SignedDownload",
    "SignedUpload",
    "UrlSigner",
    "content_disposition",
    "open_object_storage",
]

DOWNLOAD_PATH: Final = "/v1/files/signed/download"
UPLOAD_PATH: Final = "/v1/files/signed/upload"
CHUNK_BYTES: Final = 256 * 1024  # one read from disk or S3
# Writes to disk are gathered to this size first: one thread hop per MiB, not per socket read.
_WRITE_BYTES: Final = 1024 * 1024
# S3 parts: at least 5 MiB (S3's minimum but for the last), buffered one at a time.
PART_BYTES: Final = 8 * 1024 * 1024
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_MAX_KEY = 512


class ObjectStorage(Protocol):
    async def put(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> int:
        """Store ``chunks`` as ``key`` (replacing it); the bytes written. Atomic: readers see the
        old object or the whole new one, and an exception from ``chunks`` leaves no trace."""
        ...

    def open(self, key: str) -> AsyncGenerator[bytes, None]:
        """The object's bytes in chunks; NotFound (on first iteration) when it is missing.
        Close it (``aclose``) when stopping early, so the file or connection is let go."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size, None when it is missing."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing one is no error."""
        ...

    async def download_url(
        self,
        key: str,
        *,
        expires_in: int,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """A URL anyone holding it may GET the object at, for ``expires_in`` seconds. Local
        URLs are relative (``/v1/…``) unless the server knows its public origin."""
        ...

    async def upload_url(self, key: str, *, expires_in: int, content_type: str) -> str:
        """A URL anyone holding it may PUT the object's bytes to, for ``expires_in`` seconds
        (S3 wants the same ``Content-Type`` header it was signed with)."""
        ...


def check_key(key: str) -> str:
    # Keys are made by this server, never by clients; a bad one is a bug, and must not walk
    # out of the storage folder.
    if len(key) > _MAX_KEY or not _KEY.fullmatch(key) or ".." in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


def content_disposition(filename: str) -> str:
    """``attachment`` with the name as RFC 6266 wants it: an ASCII fallback and the UTF-8 one."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# --- signed URLs (local backend) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedDownload:
    key: str
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class SignedUpload:
    key: str
    content_type: str
    expires: int


class UrlSigner:
    """HMAC-SHA256 over the URL's purpose, its parameters and its expiry time."""

    def __init__(self, secret_key: str) -> None:
        # A key of its own, derived like the access tokens' (a signature made for one use can
        # never pass as another's).
        self._key = hmac.new(
            secret_key.encode(), b"voicestream file urls v1", hashlib.sha256
        ).digest()

    def sign(self, purpose: str, fields: dict[str, str]) -> str:
        message = "\n".join([purpose, *(f"{k}={fields[k]}" for k in sorted(fields))])
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def query(self, purpose: str, fields: dict[str, str], expires_in: int) -> str:
        signed = {**fields, "expires": str(int(time.time()) + expires_in)}
        return urlencode({**signed, "signature": self.sign(purpose, signed)})

    def verify(self, purpose: str, query: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
        """The signed fields of ``query``; raises for a missing, forged or expired signature."""
        signature = query.get("signature")
        expires = query.get("expires")
        if not signature or not expires:
            raise BadRequest("this URL is not signed: ask the API for a new one")
        fields = {name: query[name] for name in (*names, "expires") if name in query}
        expected = self.sign(purpose, fields)
        if not hmac.compare_digest(expected, signature):
            raise Forbidden("the URL's signature does not match: use it exactly as given")
        if not expires.isdigit() or int(expires) < time.time():
            raise LinkExpired("this signed URL has expired: ask the API for a new one")
        return fields


# --- local filesystem ------------------------------------------------------------------------


class LocalStorage:
    def __init__(self, root: Path, signer: UrlSigner, *, base_url: str = "") -> None:
        self._root = root
        self._tmp = root / ".incoming"
        self._signer = signer
        self._base = base_url

    def _path(self, key: str) -> Path:
        return self._root / check_key(key)

    async def put(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> int:
        path = self._path(key)
        await asyncio.to_thread(self._tmp.mkdir, parents=True, exist_ok=True)
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        handle = await asyncio.to_thread(tmp.open, "xb")
        written = 0
        try:
            buf = bytearray()
            async for chunk in chunks:
                buf += chunk
                written += len(chunk)
                if len(buf) >= _WRITE_BYTES:
                    await asyncio.to_thread(handle.write, bytes(buf))
                    buf.clear()
            await asyncio.to_thread(_finish, handle, bytes(buf), tmp, path)
        except BaseException:
            # Cancelled too (a client that went away): shielded, so the part file never stays.
            await asyncio.shield(asyncio.to_thread(_discard, handle, tmp))
            raise
        return written

    async def open(self, key: str) -> AsyncGenerator[bytes, None]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise NotFound("no such file") from None
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def download_url(
        self,
        key: str,
        *,
        expires_in: int,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        fields = {"key": check_key(key)}
        if filename is not None:
            fields["filename"] = filename
        if content_type is not None:
            fields["type"] = content_type
        return f"{self._base}{DOWNLOAD_PATH}?{self._signer.query('get', fields, expires_in)}"

    async def upload_url(self, key: str, *, expires_in: int, content_type: str) -> str:
        fields = {"key": check_key(key), "type": content_type}
        return f"{self._base}{UPLOAD_PATH}?{self._signer.query('put', fields, expires_in)}"

    def verify_download(self, query: dict[str, str]) -> SignedDownload:
        fields = self._signer.verify("get", query, ("key", "filename", "type"))
        return SignedDownload(_signed_key(fields), fields.get("filename"), fields.get("type"))

    def verify_upload(self, query: dict[str, str]) -> SignedUpload:
        fields = self._signer.verify("put", query, ("key", "type"))
        return SignedUpload(_signed_key(fields), fields.get("type", ""), int(fields["expires"]))


def _signed_key(fields: dict[str, str]) -> str:
    try:
        return check_key(fields.get("key", ""))
    except ValueError:  # signed by us, so never reached unless the secret leaked
        raise Forbidden("the URL names no stored file") from None


def _finish(handle: Any, rest: bytes, tmp: Path, path: Path) -> None:
    """Blocking: the last bytes, to disk for good, then into place in one rename."""
    handle.write(rest)
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)


def _discard(handle: Any, tmp: Path) -> None:
    handle.close()
    tmp.unlink(missing_ok=True)


# --- S3 --------------------------------------------------------------------------------------


class S3Storage:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._s3 = client
        self._bucket = bucket

    async def put(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> int:
        check_key(key)
        buf = bytearray()
        iterator = aiter(chunks)
        # Up to one part: a single PUT. More: a multipart upload, completed only at the end.
        async for chunk in iterator:
            buf += chunk
            if len(buf) >= PART_BYTES:
                break
        else:
            await self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=bytes(buf), ContentType=content_type
            )
            return len(buf)
        created = await self._s3.create_multipart_upload(
            Bucket=self._bucket, Key=key, ContentType=content_type
        )
        upload_id = created["UploadId"]
        try:
            return await self._upload_parts(key, upload_id, buf, iterator)
        except BaseException:
            await asyncio.shield(self._abort(key, upload_id))
            raise

    async def _upload_parts(
        self, key: str, upload_id: str, buf: bytearray, rest: AsyncIterator[bytes]
    ) -> int:
        parts: list[dict[str, Any]] = []
        written = 0

        async def send(data: bytes) -> None:
            number = len(parts) + 1
            sent = await self._s3.upload_part(
                Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            parts.append({"ETag": sent["ETag"], "PartNumber": number})

        while True:
            if len(buf) >= PART_BYTES:
                data = bytes(buf[:PART_BYTES])
                del buf[:PART_BYTES]
                await send(data)
                written += len(data)
                continue
            chunk = await anext(rest, None)
            if chunk is None:
                break
            buf += chunk
        if buf:
            await send(bytes(buf))
            written += len(buf)
        await self._s3.complete_multipart_upload(
            Bucket=self._bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]  # stubs want Literal keys
        )
        return written

    async def _abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(Exception):  # the first failure is the one to report
            await self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)

    async def open(self, key: str) -> AsyncGenerator[bytes, None]:
        try:
            got = await self._s3.get_object(Bucket=self._bucket, Key=check_key(key))
        except self._s3.exceptions.NoSuchKey:
            raise NotFound("no such file") from None
        body = got["Body"]
        try:
            async for chunk in body.iter_chunks(CHUNK_BYTES):
                yield chunk
        finally:
            body.close()

    async def size(self, key: str) -> int | None:
        try:
            head = await self._s3.head_object(Bucket=self._bucket, Key=check_key(key))
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    async def delete(self, key: str) -> None:
        await self._s3.delete_object(Bucket=self._bucket, Key=check_key(key))

    async def download_url(
        self,
        key: str,
        *,
        expires_in: int,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        params: dict[str, str] = {"Bucket": self._bucket, "Key": check_key(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename)
        if content_type is not None:
            params["ResponseContentType"] = content_type
        return await self._s3.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_in
        )

    async def upload_url(self, key: str, *, expires_in: int, content_type: str) -> str:
        params = {"Bucket": self._bucket, "Key": check_key(key), "ContentType": content_type}
        return await self._s3.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in
        )


@asynccontextmanager
async def open_object_storage(settings: Settings, secret_key: str) -> AsyncIterator[ObjectStorage]:
    """The configured backend, open for the block: S3 when a bucket is set, else local."""
    if settings.s3_bucket is None:
        base = settings.public_origin or ""
        yield LocalStorage(settings.data_dir / "files", UrlSigner(secret_key), base_url=base)
        return
    import aioboto3  # only with S3 configured: it takes a while to import
    from aiobotocore.config import AioConfig

    session = aioboto3.Session()
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            session.client(
                "s3",
                endpoint_url=settings.s3_endpoint_url,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=settings.s3_secret_access_key,
                config=AioConfig(signature_version="s3v4", retries={"mode": "standard"}),
            )
        )
        yield S3Storage(client, settings.s3_bucket)
