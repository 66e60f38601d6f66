"""Files: uploads a job reads and the outputs jobs write, one row each over object storage.

The row (``files``, migration 0015) says what the API knows; the bytes live in
``ObjectStorage`` under ``storage_key``. The two change together or not at all:

- an upload streams to storage first (atomic there), counting its size and SHA-256 as it goes
  and refusing past the size limit; only a complete object gets its row, and an object whose
  row cannot be written is deleted again. A dropped or oversized upload leaves neither.
- an upload through a signed URL reserves its row first (``bytes`` NULL until the bytes
  arrive); the local backend's PUT claims the reservation, so two PUTs cannot interleave.
  Straight to S3, the row is completed the first time it is looked at after the PUT.
- a delete removes the row inside a transaction that commits only once the object is gone.

Every lookup takes the workspace: another workspace's id is a missing one.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from voicestream.config import Settings
from voicestream.errors import Conflict, InvalidAudio, NotFound, PayloadTooLarge
from voicestream.media.chunked_decode import ChunkedDecoder
from voicestream.store import db
from voicestream.store._records import Id, clean, parse_id
from voicestream.store.object_storage import ObjectStorage, open_object_storage

# A stored object's bytes; ``aclose`` it when stopping early.
Chunks = AsyncGenerator[bytes, None]

__all__ = [
    "FileRecord",
    "FileStore",
    "PendingUpload",
    "Purpose",
    "StoredJobFiles",
    "SubmissionFiles",
    "open_file_store",
]

Purpose = Literal["input", "output"]
# Job outputs get ids derived from (job, name): a job that runs twice names the same file.
_OUTPUT_NAMESPACE: Final = uuid.UUID("5b0d1a4e-8c5f-4f0e-9a51-0d4f6f1c9e27")
# A media container's header (and the bitrate a duration is estimated from without one) is
# in its first bytes; a container that keeps its index at the end (some MP4s) is not probed.
_PROBE_BYTES: Final = 1024 * 1024
_COLUMNS: Final = """
    id, workspace_id, name, content_type, bytes, sha256, storage_key, purpose, job_id,
    output_name, created_at, upload_expires_at
"""


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    content_type: str
    bytes: int | None  # None while a signed upload is awaited
    sha256: str | None  # None for bytes that went straight to S3
    storage_key: str
    purpose: Purpose
    job_id: uuid.UUID | None
    output_name: str | None
    created_at: datetime
    upload_expires_at: datetime | None

    @property
    def uploaded(self) -> bool:
        return self.bytes is not None


@dataclass(frozen=True, slots=True)
class PendingUpload:
    file: FileRecord
    url: str  # PUT the bytes here, with the file's Content-Type
    expires_at: datetime


def _record(row: db.Record) -> FileRecord:
    return FileRecord(**dict(row))


class _Meter:
    """Counts and hashes the bytes passing through, and stops them past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.size += len(chunk)
            if self.size > self.limit:
                raise PayloadTooLarge(
                    f"the file exceeds the limit of {self.limit} bytes",
                    details={"limit": self.limit},
                )
            # hashlib releases the GIL for large buffers; a socket read is small enough here.
            self._hash.update(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class FileStore:
    """Files of every workspace: rows in PostgreSQL, bytes in ``storage``."""

    def __init__(
        self, pool: db.Pool, storage: ObjectStorage, *, max_bytes: int, url_seconds: int
    ) -> None:
        self._pool = pool
        self.storage = storage
        self.max_bytes = max_bytes
        self.url_seconds = url_seconds

    # --- reading ---------------------------------------------------------------------------

    async def get(self, workspace_id: Id, file_id: Id) -> FileRecord:
        """Raises NotFound for an unknown id or another workspace's."""
        ws = parse_id(workspace_id, "workspace")
        fid = parse_id(file_id, "file")
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM files WHERE id = $1 AND workspace_id = $2", fid, ws
        )
        if row is None:
            raise NotFound(f"no file with id {str(file_id)!r}")
        record = _record(row)
        return record if record.uploaded else await self._settle_direct_upload(record)

    async def download_url(self, record: FileRecord) -> str | None:
        """A signed URL for ``record``'s bytes; None while they are awaited."""
        if not record.uploaded:
            return None
        return await self.storage.download_url(
            record.storage_key,
            expires_in=self.url_seconds,
            filename=record.name,
            content_type=record.content_type,
        )

    async def fresh_urls(
        self, workspace_id: uuid.UUID, file_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, str | None]:
        """A newly signed download URL for each of ``workspace_id``'s files among
        ``file_ids`` (one query); a file that is gone, or not this workspace's, is left out."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM files WHERE workspace_id = $1 AND id = ANY($2::uuid[])",
            workspace_id,
            file_ids,
        )
        return {row["id"]: await self.download_url(_record(row)) for row in rows}

    async def open(self, workspace_id: Id, file_id: Id) -> tuple[FileRecord, Chunks]:
        record = await self.get(workspace_id, file_id)
        if not record.uploaded:
            raise NotFound(f"file {record.id} has not been uploaded yet")
        return record, self.storage.open(record.storage_key)

    # --- writing ---------------------------------------------------------------------------

    async def upload(
        self,
        workspace_id: Id,
        *,
        name: str,
        content_type: str,
        chunks: AsyncIterator[bytes],
    ) -> FileRecord:
        """Stream ``chunks`` into a new input file. PayloadTooLarge past the limit; whatever
        goes wrong, nothing is kept."""
        ws = parse_id(workspace_id, "workspace")
        file_id = uuid.uuid4()
        key = f"{ws}/{file_id}"
        meter = _Meter(self.max_bytes)
        size = await self.storage.put(key, meter.wrap(chunks), content_type)
        try:
            row = await self._pool.fetchrow(
                f"""
                INSERT INTO files (id, workspace_id, name, content_type, bytes, sha256,
                                   storage_key, purpose)
                VALUES ($1, $2, $3, $4, $5, $6, $7, 'input')
                RETURNING {_COLUMNS}
                """,
                file_id,
                ws,
                clean(name),
                content_type,
                size,
                meter.sha256,
                key,
            )
        except BaseException:
            await asyncio.shield(self.storage.delete(key))
            raise
        return _record(row)

    async def create_upload(
        self, workspace_id: Id, *, name: str, content_type: str
    ) -> PendingUpload:
        """Reserve an input file and sign a URL its bytes may be PUT to until it expires."""
        ws = parse_id(workspace_id, "workspace")
        file_id = uuid.uuid4()
        key = f"{ws}/{file_id}"
        expires_at = datetime.now(UTC) + timedelta(seconds=self.url_seconds)
        url = await self.storage.upload_url(
            key, expires_in=self.url_seconds, content_type=content_type
        )
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO files (id, workspace_id, name, content_type, storage_key, purpose,
                               upload_expires_at)
            VALUES ($1, $2, $3, $4, $5, 'input', $6)
            RETURNING {_COLUMNS}
            """,
            file_id,
            ws,
            clean(name),
            content_type,
            key,
            expires_at,
        )
        return PendingUpload(_record(row), url, expires_at)

    async def receive_upload(
        self, key: str, expires: datetime, chunks: AsyncIterator[bytes]
    ) -> FileRecord:
        """The bytes PUT to a signed upload URL of this server (``key``, valid until
        ``expires``). NotFound when the reservation is gone, Conflict when the bytes already
        arrived (or are arriving); a failed PUT can be retried with the same URL."""
        claimed = await self._pool.fetchrow(
            f"""
            UPDATE files SET upload_expires_at = NULL
            WHERE storage_key = $1 AND bytes IS NULL AND upload_expires_at IS NOT NULL
            RETURNING {_COLUMNS}
            """,
            key,
        )
        if claimed is None:
            exists = await self._pool.fetchval("SELECT 1 FROM files WHERE storage_key = $1", key)
            if exists is None:
                raise NotFound("this upload was deleted: ask for a new upload URL")
            raise Conflict("this file's bytes were already uploaded (or are arriving now)")
        record = _record(claimed)
        meter = _Meter(self.max_bytes)
        try:
            size = await self.storage.put(key, meter.wrap(chunks), record.content_type)
            row = await self._pool.fetchrow(
                f"UPDATE files SET bytes = $2, sha256 = $3 WHERE id = $1 RETURNING {_COLUMNS}",
                record.id,
                size,
                meter.sha256,
            )
        except BaseException:
            await asyncio.shield(self._release_claim(record, expires))
            raise
        if row is None:  # deleted while the bytes arrived
            await self.storage.delete(key)
            raise NotFound("this upload was deleted: ask for a new upload URL")
        return _record(row)

    async def _release_claim(self, record: FileRecord, expires: datetime) -> None:
        await self.storage.delete(record.storage_key)
        await self._pool.execute(
            "UPDATE files SET upload_expires_at = $2 WHERE id = $1 AND bytes IS NULL",
            record.id,
            expires,
        )

    async def _settle_direct_upload(self, record: FileRecord) -> FileRecord:
        # Bytes PUT straight to S3 never pass this server: the object's size tells whether
        # (and how much) arrived. Its SHA-256 stays unknown rather than being read back.
        size = await self.storage.size(record.storage_key)
        if size is None:
            return record
        if size > self.max_bytes:
            await self.delete(record.workspace_id, record.id)
            raise PayloadTooLarge(
                f"the uploaded file exceeds the limit of {self.max_bytes} bytes and was deleted",
                details={"limit": self.max_bytes},
            )
        row = await self._pool.fetchrow(
            f"""
            UPDATE files SET bytes = $2, upload_expires_at = NULL
            WHERE id = $1 AND bytes IS NULL RETURNING {_COLUMNS}
            """,
            record.id,
            size,
        )
        return _record(row) if row is not None else record

    async def save_output(
        self,
        workspace_id: Id,
        job_id: uuid.UUID,
        name: str,
        content_type: str,
        chunks: AsyncIterator[bytes],
    ) -> FileRecord:
        """A job's output ``name``: the same id, object and row however often the job runs."""
        ws = parse_id(workspace_id, "workspace")
        file_id = uuid.uuid5(_OUTPUT_NAMESPACE, f"{job_id}/{name}")
        key = f"{ws}/jobs/{job_id}/{file_id}"
        # Outputs are made by the server: no size limit beyond what storage takes.
        meter = _Meter(2**63 - 1)
        size = await self.storage.put(key, meter.wrap(chunks), content_type)
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO files (id, workspace_id, name, content_type, bytes, sha256,
                               storage_key, purpose, job_id, output_name)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 'output', $8, $3)
            ON CONFLICT (job_id, output_name) DO UPDATE
                SET content_type = EXCLUDED.content_type, bytes = EXCLUDED.bytes,
                    sha256 = EXCLUDED.sha256
            RETURNING {_COLUMNS}
            """,
            file_id,
            ws,
            clean(name),
            content_type,
            size,
            meter.sha256,
            key,
            job_id,
        )
        return _record(row)

    async def delete(self, workspace_id: Id, file_id: Id) -> None:
        """Row and object; NotFound for an unknown id or another workspace's."""
        ws = parse_id(workspace_id, "workspace")
        fid = parse_id(file_id, "file")
        async with self._pool.acquire() as conn, conn.transaction():
            key = await conn.fetchval(
                "DELETE FROM files WHERE id = $1 AND workspace_id = $2 RETURNING storage_key",
                fid,
                ws,
            )
            if key is None:
                raise NotFound(f"no file with id {str(file_id)!r}")
            # Inside the transaction: should the object stay, so does the row naming it.
            await self.storage.delete(key)

    def for_job(self, workspace_id: uuid.UUID, job_id: uuid.UUID) -> StoredJobFiles:
        """What job ``job_id`` of ``workspace_id`` reads and writes (``JobContext.files``)."""
        return StoredJobFiles(self, workspace_id, job_id)

    def for_submission(self, workspace_id: uuid.UUID) -> SubmissionFiles:
        """What a job's estimate may learn of ``workspace_id``'s files (``InputFiles``)."""
        return SubmissionFiles(self, workspace_id)


@asynccontextmanager
async def open_file_store(
    settings: Settings, pool: db.Pool, secret_key: str
) -> AsyncIterator[FileStore]:
    """The files of a process (the server, a worker), over the configured object storage."""
    async with open_object_storage(settings, secret_key) as storage:
        yield FileStore(
            pool,
            storage,
            max_bytes=settings.max_file_bytes,
            url_seconds=settings.file_url_seconds,
        )


class StoredJobFiles:
    """``JobFiles`` (jobs/context.py) for one job: its workspace's inputs, its own outputs."""

    def __init__(self, files: FileStore, workspace_id: uuid.UUID, job_id: uuid.UUID) -> None:
        self._files = files
        self._workspace_id = workspace_id
        self._job_id = job_id

    @property
    def store(self) -> FileStore:
        """Every file of every workspace: for the data-lifecycle jobs (retention, export,
        deletion), which work on a whole workspace's files rather than one job's."""
        return self._files

    async def open_input(self, file_id: uuid.UUID) -> tuple[FileRecord, Chunks]:
        """NotFound for another workspace's file, or one whose bytes have not arrived."""
        return await self._files.open(self._workspace_id, file_id)

    async def save_output(
        self,
        name: str,
        content_type: str,
        chunks: AsyncIterator[bytes],
        *,
        format: str,
        duration: float | None,
    ) -> dict[str, Any]:
        """Store an output; ``{"id","url","format","duration","bytes"}`` for ``result.files``.
        The URL is signed and expires (``VOICESTREAM_FILE_URL_SECONDS``); ``GET
        /v1/files/{id}`` signs a fresh one."""
        record = await self._files.save_output(
            self._workspace_id, self._job_id, name, content_type, chunks
        )
        return {
            "id": str(record.id),
            "url": await self._files.download_url(record),
            "format": format,
            "duration": duration,
            "bytes": record.bytes,
        }

    async def delete_output(self, file_id: uuid.UUID) -> None:
        """An output this job saved that no longer has a use (what it was made for was deleted
        while the job ran); one already gone is fine."""
        try:
            await self._files.delete(self._workspace_id, file_id)
        except NotFound:
            return


class SubmissionFiles:
    """``InputFiles`` (jobs/registry.py) for one workspace: what an estimate may look at. An
    unknown, foreign or not yet uploaded file is None, not an error: the submission goes on
    with the type's flat estimate and the run fails on the file, as it would have."""

    def __init__(self, files: FileStore, workspace_id: uuid.UUID) -> None:
        self._files = files
        self._workspace_id = workspace_id

    async def describe(self, file_id: uuid.UUID) -> FileRecord | None:
        try:
            record = await self._files.get(self._workspace_id, file_id)
        except NotFound:
            return None
        return record if record.uploaded else None

    async def duration(self, file_id: uuid.UUID) -> float | None:
        record = await self.describe(file_id)
        if record is None or not record.bytes:
            return None
        head = await self._prefix(record, _PROBE_BYTES)
        return await asyncio.to_thread(_probe_seconds, head, record.bytes)

    async def read(self, file_id: uuid.UUID, max_bytes: int) -> bytes | None:
        record = await self.describe(file_id)
        if record is None or record.bytes is None or record.bytes > max_bytes:
            return None
        return await self._prefix(record, max_bytes)

    async def _prefix(self, record: FileRecord, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        chunks = self._files.storage.open(record.storage_key)
        try:
            async for chunk in chunks:
                parts.append(chunk[: limit - size])
                size += len(parts[-1])
                if size >= limit:
                    break
        finally:
            await chunks.aclose()
        return b"".join(parts)


class _Head(io.RawIOBase):
    """The first bytes of a file that claims its whole size, so a demuxer that estimates a
    duration from the bitrate and the size (MP3 without a header) uses the real size."""

    def __init__(self, head: bytes, size: int) -> None:
        self._head = head
        self._size = max(size, len(head))
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        data = self._head[self._pos : self._pos + len(buffer)]
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _probe_seconds(head: bytes, size: int) -> float | None:
    """Blocking: the duration a media file's header declares, from its first bytes."""
    try:
        decoder = ChunkedDecoder(
            io.BufferedReader(_Head(head, size)), 16000, max_seconds=float("inf")
        )
    except (InvalidAudio, PayloadTooLarge):
        return None
    try:
        return decoder.declared_seconds
    finally:
        decoder.close()
