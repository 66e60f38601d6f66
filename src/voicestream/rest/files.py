"""``/v1/files``: uploads for jobs to read, and the files jobs write.

- ``POST /v1/files``: a multipart form with one part, ``file``, streamed to storage as it
  arrives (never whole in memory) → 201 with the file's id, size and SHA-256.
- ``POST /v1/files/uploads``: a signed URL to ``PUT`` the bytes to instead, for big files or
  browsers: this server's own (``/v1/files/signed/upload``) or, with S3, the store's presigned
  one.
- ``GET /v1/files/{file_id}``: the file's metadata and a signed download URL;
  ``DELETE``: the file and its bytes.
- ``GET /v1/files/signed/download`` and ``PUT /v1/files/signed/upload``: what the local
  backend's signed URLs point at. Public: the signature is the credential. A forged one is a
  403, an expired one 410 ``link_expired``.

A file over ``VOICESTREAM_MAX_FILE_BYTES`` is a 413, and a refused, dropped or oversized upload
leaves no bytes and no row (``store/files.py``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from aiohttp import BodyPartReader, MultipartReader, web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..errors import BadRequest, NotFound, PayloadTooLarge, ValidationFailed
from ..identity.request_principal import principal_of
from ..protocols.json_messages import invalid_text_reason
from ..store.files import FileRecord, FileStore
from ..store.object_storage import CHUNK_BYTES, LocalStorage, content_disposition
from .bodies import read_model
from .multipart import MALFORMED_MULTIPART, MAX_FIELD_BYTES

__all__ = [
    "FILES",
    "FILES_PREFIX",
    "FileModel",
    "UploadBody",
    "UploadModel",
    "files_app",
]

FILES: web.AppKey[FileStore] = web.AppKey("voicestream_files", FileStore)
FILES_PREFIX: Final = "/v1/files"
_DEFAULT_TYPE: Final = "application/octet-stream"
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def _media_type(value: str) -> str:
    value = value.strip().lower()
    if not _MEDIA_TYPE.fullmatch(value):
        raise ValueError("must be a media type such as audio/wav")
    return value


def _file_name(value: str) -> str:
    if (reason := invalid_text_reason(value)) is not None:
        raise ValueError(reason)
    return value


MediaType = Annotated[str, AfterValidator(_media_type)]
FileName = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_file_name)]


class FileModel(BaseModel):
    id: str
    name: str
    content_type: str
    bytes: int | None = Field(description="null until the bytes of a signed upload arrive")
    sha256: str | None = Field(description="null for bytes PUT straight to S3")
    purpose: Literal["input", "output"]
    job_id: str | None
    status: Literal["uploaded", "awaiting_upload"]
    created_at: datetime
    url: str | None = Field(
        description="a signed download URL that expires; null until the bytes arrive"
    )

    @classmethod
    def of(cls, record: FileRecord, url: str | None) -> FileModel:
        return cls(
            id=str(record.id),
            name=record.name,
            content_type=record.content_type,
            bytes=record.bytes,
            sha256=record.sha256,
            purpose=record.purpose,
            job_id=str(record.job_id) if record.job_id is not None else None,
            status="uploaded" if record.uploaded else "awaiting_upload",
            created_at=record.created_at,
            url=url,
        )


class UploadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: FileName
    content_type: MediaType = _DEFAULT_TYPE


class UploadModel(BaseModel):
    file_id: str
    upload_url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="send these with the PUT (S3 checks them)")
    expires_at: datetime


# --- the API ---------------------------------------------------------------------------------


async def create_file(request: web.Request) -> web.Response:
    files = request.config_dict[FILES]
    workspace_id = principal_of(request).workspace_id
    # Only one part is allowed, so a body this much past the limit holds a file past it.
    if (
        length := request.content_length
    ) is not None and length > files.max_bytes + MAX_FIELD_BYTES:
        raise _too_large(files)
    reader = await _multipart(request)
    part = await _next_part(reader)
    if part is None:
        raise ValidationFailed("no file: send a multipart form with one part named 'file'")
    if not isinstance(part, BodyPartReader) or part.name != "file":
        name = part.name if isinstance(part, BodyPartReader) else None
        raise BadRequest(
            f"unexpected part {name!r}: send one part named 'file'", details={"param": name}
        )
    try:
        name = _file_name(part.filename or "file")[:255]
        declared = part.headers.get("Content-Type", "").split(";")[0]
        content_type = _media_type(declared) if declared.strip() else _DEFAULT_TYPE
    except ValueError as exc:
        raise BadRequest(f"the file part: {exc}", details={"param": "file"}) from None
    record = await files.upload(
        workspace_id, name=name, content_type=content_type, chunks=_part_chunks(part)
    )
    if await _next_part(reader) is not None:
        await files.delete(workspace_id, record.id)
        raise BadRequest("one file per request: the form has more than one part")
    return _json(await _model(request, record), 201)


async def create_upload(request: web.Request) -> web.Response:
    files = request.config_dict[FILES]
    body = await read_model(request, UploadBody)
    pending = await files.create_upload(
        principal_of(request).workspace_id, name=body.name, content_type=body.content_type
    )
    model = UploadModel(
        file_id=str(pending.file.id),
        upload_url=_absolute(request, pending.url),
        headers={"Content-Type": body.content_type},
        expires_at=pending.expires_at,
    )
    return _json(model, 201)


async def get_file(request: web.Request) -> web.Response:
    files = request.config_dict[FILES]
    record = await files.get(principal_of(request).workspace_id, request.match_info["file_id"])
    return _json(await _model(request, record))


async def delete_file(request: web.Request) -> web.Response:
    files = request.config_dict[FILES]
    await files.delete(principal_of(request).workspace_id, request.match_info["file_id"])
    return web.Response(status=204)


# --- the local backend's signed URLs ---------------------------------------------------------


async def signed_download(request: web.Request) -> web.StreamResponse:
    storage = _local_storage(request)
    signed = storage.verify_download(dict(request.query))
    size = await storage.size(signed.key)
    if size is None:
        raise NotFound("the file is gone: it was deleted")
    headers = {
        "Content-Type": signed.content_type or _DEFAULT_TYPE,
        "Content-Length": str(size),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if signed.filename is not None:
        headers["Content-Disposition"] = content_disposition(signed.filename)
    response = web.StreamResponse(headers=headers)
    async with contextlib.aclosing(storage.open(signed.key)) as chunks:
        # The first read before the answer starts: a file deleted just now is still a 404.
        first = await anext(chunks, b"")
        await response.prepare(request)
        try:
            await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
        except ConnectionError:
            # The client stopped downloading: nobody to answer, and not our failure.
            return response
    await response.write_eof()
    return response


async def signed_upload(request: web.Request) -> web.Response:
    files = request.config_dict[FILES]
    signed = _local_storage(request).verify_upload(dict(request.query))
    if (length := request.content_length) is not None and length > files.max_bytes:
        raise _too_large(files)
    expires = datetime.fromtimestamp(signed.expires, UTC)
    record = await files.receive_upload(signed.key, expires, _body_chunks(request))
    return _json(await _model(request, record))


# --- helpers ---------------------------------------------------------------------------------


def _local_storage(request: web.Request) -> LocalStorage:
    storage = request.config_dict[FILES].storage
    if not isinstance(storage, LocalStorage):
        raise NotFound("this server keeps files in S3: use the URLs the API gives")
    return storage


def _too_large(files: FileStore) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the file exceeds the limit of {files.max_bytes} bytes", details={"limit": files.max_bytes}
    )


async def _multipart(request: web.Request) -> MultipartReader:
    try:
        return await request.multipart()
    except MALFORMED_MULTIPART:
        raise BadRequest("expected a multipart/form-data body with one part named 'file'") from None


async def _next_part(reader: MultipartReader) -> object | None:
    try:
        return await reader.next()
    except MALFORMED_MULTIPART as exc:
        raise BadRequest(f"malformed multipart body: {str(exc)[:200]}") from None


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        try:
            chunk = await part.read_chunk(CHUNK_BYTES)
        except MALFORMED_MULTIPART as exc:
            raise BadRequest(f"malformed multipart body: {str(exc)[:200]}") from None
        except ConnectionError:
            raise _cut_off() from None
        if not chunk:
            return
        yield chunk


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            yield chunk
    except ConnectionError:
        raise _cut_off() from None


def _cut_off() -> BadRequest:
    # The client went away mid-body. Nobody reads this answer, but as an error of ours the
    # lost connection would be logged as a server failure.
    return BadRequest("the upload was cut off before its end")


def _absolute(request: web.Request, url: str) -> str:
    # The local backend signs paths on this server; say where that server is.
    return f"{request.scheme}://{request.host}{url}" if url.startswith("/") else url


async def _model(request: web.Request, record: FileRecord) -> FileModel:
    url = await request.config_dict[FILES].download_url(record)
    return FileModel.of(record, _absolute(request, url) if url is not None else None)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


def files_app() -> web.Application:
    """The sub-app to mount at ``FILES_PREFIX``."""
    app = web.Application()
    app.add_routes(
        [
            web.post("", create_file),
            web.post("/uploads", create_upload),
            web.get("/signed/download", signed_download, allow_head=False),
            web.put("/signed/upload", signed_upload),
            web.get("/{file_id}", get_file, allow_head=False),
            web.delete("/{file_id}", delete_file),
        ]
    )
    return app
