"""The ``data_export`` job: one zip archive of everything a workspace owns, with a manifest.

Requested through ``POST /v1/admin/data-exports``; input ``{}``. The archive holds:

- ``workspace.json``: the workspace's own row;
- ``tables/<table>.jsonl``: every row of every table holding the workspace's data, one JSON
  object a line (``store/workspace_data.py`` finds the tables in the catalog; hashes and sealed
  secrets are written as ``"[redacted]"``);
- ``files/<file id>/<name>``: the bytes of each stored file;
- ``vectors/<collection>.jsonl``: each vector point's id and payload (the vectors themselves
  are derived from those texts);
- ``manifest.json``: per entry its bytes, SHA-256 and, for tables and vectors, its rows.

It is written to a scratch file first (zip entries stream through, so a large file is never
held in memory), then stored as the job's output ``workspace-export.zip`` under a fixed name:
a rerun replaces it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ...store.workspace_data import table_rows, workspace_tables
from ..context import JobContext
from ..registry import InputFiles, JobOutcome
from .scratch import scratch_dir
from .workspace_services import WorkspaceServices, workspace_services

__all__ = ["ARCHIVE_NAME", "DataExportInput", "DataExportJob"]

ARCHIVE_NAME: Final = "workspace-export.zip"
_LINES_PER_WRITE: Final = 200
_READ_CHUNK: Final = 1024 * 1024


class DataExportInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Archive:
    """A zip on disk written entry by entry off the loop, counting each entry for the manifest."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._zip: zipfile.ZipFile | None = None
        self._entry: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self.entries: list[dict[str, Any]] = []

    async def open(self) -> None:
        await asyncio.to_thread(self._path.parent.mkdir, parents=True, exist_ok=True)
        self._zip = await asyncio.to_thread(
            zipfile.ZipFile, self._path, "w", zipfile.ZIP_DEFLATED, True
        )

    async def begin(self, name: str) -> None:
        assert self._zip is not None
        self._entry = await asyncio.to_thread(self._zip.open, name, "w", force_zip64=True)
        self._hash = hashlib.sha256()
        self._size = 0
        self.entries.append({"path": name})

    async def write(self, data: bytes) -> None:
        assert self._entry is not None
        self._hash.update(data)
        self._size += len(data)
        await asyncio.to_thread(self._entry.write, data)

    async def end(self, **extra: Any) -> None:
        assert self._entry is not None
        await asyncio.to_thread(self._entry.close)
        self._entry = None
        self.entries[-1].update(bytes=self._size, sha256=self._hash.hexdigest(), **extra)

    async def close(self) -> None:
        entry, archive = self._entry, self._zip
        self._entry = self._zip = None
        if entry is not None:
            await asyncio.to_thread(entry.close)
        if archive is not None:
            await asyncio.to_thread(archive.close)


def _line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False, default=str, sort_keys=True) + "\n").encode()


class DataExportJob:
    name = "data_export"
    input_model: type[BaseModel] = DataExportInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        return 0

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        services = workspace_services(ctx)
        path = scratch_dir(ctx.settings) / f"data-export-{ctx.job_id}.zip"
        archive = _Archive(path)
        try:
            await archive.open()
            manifest = await _write(ctx, services, archive)
            # Serialized before its own entry is begun: the manifest lists the others only.
            text = json.dumps(manifest, indent=2, default=str).encode()
            await archive.begin("manifest.json")
            await archive.write(text)
            await archive.end()
            await archive.close()
            # Opened here, not in the generator: a cancelled upload leaves no file open.
            handle = await asyncio.to_thread(path.open, "rb")
            try:
                stored = await ctx.files.save_output(
                    ARCHIVE_NAME, "application/zip", _read(handle), format="zip", duration=None
                )
            finally:
                await asyncio.to_thread(handle.close)
        finally:
            await archive.close()
            await asyncio.to_thread(path.unlink, True)
        await ctx.progress(100)
        counts = {entry["path"]: entry["rows"] for entry in manifest["entries"] if "rows" in entry}
        return JobOutcome(
            result={"files": [stored], "counts": counts, "entries": len(manifest["entries"])}
        )


async def _write(ctx: JobContext, services: WorkspaceServices, archive: _Archive) -> dict[str, Any]:
    workspace = await services.pool.fetchrow(
        "SELECT to_jsonb(w) AS row FROM workspaces w WHERE id = $1", ctx.workspace_id
    )
    await archive.begin("workspace.json")
    await archive.write(_line(json.loads(workspace["row"])) if workspace else b"{}\n")
    await archive.end()
    tables = await workspace_tables(services.pool)
    for index, table in enumerate(tables):
        await archive.begin(f"tables/{table.name}.jsonl")
        rows = 0
        lines: list[bytes] = []
        async for row in table_rows(services.pool, table, ctx.workspace_id):
            lines.append(_line(row))
            rows += 1
            if len(lines) >= _LINES_PER_WRITE:
                await archive.write(b"".join(lines))
                lines.clear()
        if lines:
            await archive.write(b"".join(lines))
        await archive.end(rows=rows)
        await ctx.progress(40 * (index + 1) / len(tables))
    await _write_files(ctx, services, archive)
    await _write_vectors(ctx, services, archive)
    return {
        "workspace_id": str(ctx.workspace_id),
        "created_at": datetime.now(UTC).isoformat(),
        "job_id": str(ctx.job_id),
        "entries": list(archive.entries),
    }


async def _write_files(ctx: JobContext, services: WorkspaceServices, archive: _Archive) -> None:
    rows = await services.pool.fetch(
        """
        SELECT id, name FROM files
        WHERE workspace_id = $1 AND bytes IS NOT NULL AND job_id IS DISTINCT FROM $2
        ORDER BY created_at, id
        """,
        ctx.workspace_id,
        ctx.job_id,
    )
    for index, row in enumerate(rows):
        file_id: UUID = row["id"]
        record, chunks = await services.files.open(ctx.workspace_id, file_id)
        # Only the last path segment of the name: a name is the uploader's, never a path.
        name = record.name.replace("\\", "/").rsplit("/", 1)[-1] or "file"
        await archive.begin(f"files/{file_id}/{name}")
        try:
            async for chunk in chunks:
                await archive.write(chunk)
        finally:
            await chunks.aclose()
        await archive.end(file_id=str(file_id), content_type=record.content_type)
        await ctx.progress(40 + 50 * (index + 1) / len(rows))


async def _write_vectors(ctx: JobContext, services: WorkspaceServices, archive: _Archive) -> None:
    points = await services.vectors.workspace_payloads(ctx.workspace_id)
    by_collection: dict[str, list[bytes]] = {}
    for collection, point_id, payload in points:
        by_collection.setdefault(collection, []).append(_line({"id": point_id, "payload": payload}))
    for collection in ("knowledge", "memory"):
        lines = by_collection.get(collection, [])
        await archive.begin(f"vectors/{collection}.jsonl")
        await archive.write(b"".join(lines))
        await archive.end(rows=len(lines))


async def _read(handle: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(handle.read, _READ_CHUNK):
        yield chunk
