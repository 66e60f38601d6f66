"""ElevenLabs Studio snapshots: a conversion's audio, per chapter and per project, listed,
read, streamed from the file store, and a project snapshot's chapters as one zip. Mounted with
the rest of Studio by transports/elevenlabs_studio.py.
"""

from __future__ import annotations

import functools
from contextlib import aclosing
from uuid import UUID

from aiohttp import web

from ..errors import NotFound
from ..media.zip_archive import stored_zip
from ..rest.files import FILES
from ..rest.resources import MEDIA_EXECUTOR, POOL
from ..store.studio import StudioSnapshot, StudioStore
from .context import principal_of
from .elevenlabs_studio_shapes import snapshot_json

__all__ = [
    "archive_project_snapshot",
    "get_chapter_snapshot",
    "get_project_snapshot",
    "list_chapter_snapshots",
    "list_project_snapshots",
    "stream_chapter_snapshot",
    "stream_project_snapshot",
]


def _studio(request: web.Request) -> StudioStore:
    return StudioStore(request.app[POOL])


def _ids(request: web.Request) -> tuple[UUID, str]:
    return principal_of(request).workspace_id, request.match_info["studio_project_id"]


async def list_project_snapshots(request: web.Request) -> web.StreamResponse:
    workspace_id, project_id = _ids(request)
    snapshots = await _studio(request).snapshots(workspace_id, project_id)
    return web.json_response({"snapshots": [snapshot_json(s) for s in snapshots]})


async def list_chapter_snapshots(request: web.Request) -> web.StreamResponse:
    workspace_id, project_id = _ids(request)
    snapshots = await _studio(request).snapshots(
        workspace_id, project_id, request.match_info["chapter_id"]
    )
    return web.json_response({"snapshots": [snapshot_json(s) for s in snapshots]})


async def _snapshot(request: web.Request, chapter: bool) -> StudioSnapshot:
    workspace_id, project_id = _ids(request)
    if chapter:
        return await _studio(request).snapshot(
            workspace_id,
            project_id,
            request.match_info["chapter_snapshot_id"],
            request.match_info["chapter_id"],
        )
    return await _studio(request).snapshot(
        workspace_id, project_id, request.match_info["project_snapshot_id"]
    )


async def get_project_snapshot(request: web.Request) -> web.StreamResponse:
    return web.json_response(snapshot_json(await _snapshot(request, False), extended=True))


async def get_chapter_snapshot(request: web.Request) -> web.StreamResponse:
    return web.json_response(snapshot_json(await _snapshot(request, True), extended=True))


def _gone(snapshot: StudioSnapshot) -> NotFound:
    return NotFound(f"the audio of snapshot {snapshot.id!r} was deleted")


async def _stream(request: web.Request, chapter: bool) -> web.StreamResponse:
    """The snapshot's MP3, streamed from the file store as it is read."""
    snapshot = await _snapshot(request, chapter)
    if snapshot.file_id is None:
        raise _gone(snapshot)
    record, chunks = await request.app[FILES].open(
        principal_of(request).workspace_id, snapshot.file_id
    )
    response = web.StreamResponse(headers={"Content-Type": record.content_type or "audio/mpeg"})
    if record.bytes is not None:
        response.content_length = record.bytes
    async with aclosing(chunks):
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


async def stream_project_snapshot(request: web.Request) -> web.StreamResponse:
    return await _stream(request, False)


async def stream_chapter_snapshot(request: web.Request) -> web.StreamResponse:
    return await _stream(request, True)


async def _read(request: web.Request, file_id: UUID) -> bytes:
    _, chunks = await request.app[FILES].open(principal_of(request).workspace_id, file_id)
    async with aclosing(chunks):
        return b"".join([chunk async for chunk in chunks])


async def archive_project_snapshot(request: web.Request) -> web.StreamResponse:
    """A zip of the chapter MP3s the snapshot's conversion made, in chapter order."""
    workspace_id, project_id = _ids(request)
    snapshot = await _snapshot(request, False)
    chapters = await _studio(request).chapter_snapshots_of(
        workspace_id, project_id, snapshot.job_id
    )
    files: list[tuple[str, bytes]] = []
    for index, chapter in enumerate(chapters, start=1):
        if chapter.file_id is None:
            continue
        safe = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in chapter.name)
        files.append(
            (f"{index:03d} {safe.strip() or 'chapter'}.mp3", await _read(request, chapter.file_id))
        )
    archive = await request.app[MEDIA_EXECUTOR].run(functools.partial(stored_zip, files))
    return web.Response(
        body=archive,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{snapshot.id}.zip"'},
    )
