"""Dubs: a workspace's source media, its dubbing plan and its outputs per language (0017).

Every lookup takes the workspace: another workspace's dub is a missing one. A dub is written
in the transaction that submits its first job (``insert`` takes that connection), so there is
never a dub without the job that works on it.

The status a reader sees also looks at that job: a job that ended without the dub hearing of
it (a worker that died, a cancel) shows as ``failed`` with the job's error.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store._records import Id, clean, parse_id

__all__ = [
    "DUB_STATUSES",
    "MAX_PAGE_SIZE",
    "DubChange",
    "DubPage",
    "DubRecord",
    "DubStatus",
    "DubStore",
    "NewDub",
]

DubStatus = Literal["dubbing", "dubbed", "failed"]
DUB_STATUSES: Final[tuple[DubStatus, ...]] = ("dubbing", "dubbed", "failed")
MAX_PAGE_SIZE: Final = 100
_CURSOR_PREFIX: Final = "dub:"
_COLUMNS: Final = """
    d.id, d.workspace_id, d.name, d.status, d.source_file_id, d.background_file_id,
    d.foreground_file_id, d.owns_source, d.options, d.supplied, d.media, d.plan, d.outputs,
    d.error, d.job_id, d.version, d.created_at, d.updated_at,
    j.status AS job_status, j.error AS job_error
"""
_FROM: Final = "dubs d LEFT JOIN jobs j ON j.id = d.job_id"
# The status ``_record`` shows, in SQL (for filtering).
_SEEN_STATUS: Final = (
    "(CASE WHEN d.status = 'dubbing' AND j.status IN ('failed', 'cancelled') "
    "THEN 'failed' ELSE d.status END)"
)


@dataclass(frozen=True, slots=True)
class NewDub:
    id: UUID
    workspace_id: UUID
    name: str
    source_file_id: UUID
    owns_source: bool
    options: dict[str, Any]
    supplied: dict[str, Any]
    media: dict[str, Any]
    background_file_id: UUID | None = None
    foreground_file_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class DubRecord:
    id: UUID
    workspace_id: UUID
    name: str
    status: DubStatus
    source_file_id: UUID | None
    background_file_id: UUID | None
    foreground_file_id: UUID | None
    owns_source: bool
    options: dict[str, Any]
    supplied: dict[str, Any]
    media: dict[str, Any]
    plan: dict[str, Any] | None
    outputs: dict[str, Any]
    error: str | None
    job_id: UUID | None
    version: int
    created_at: datetime
    updated_at: datetime

    def file_ids(self) -> list[UUID]:
        """The files the dub owns: deleted with it."""
        ids = [self.background_file_id, self.foreground_file_id]
        if self.owns_source:
            ids.append(self.source_file_id)
        for output in self.outputs.values():
            if isinstance(output, dict) and output.get("file_id"):
                ids.append(UUID(str(output["file_id"])))
        return [file_id for file_id in ids if file_id is not None]


@dataclass(frozen=True, slots=True)
class DubChange:
    """What an edit stores: the new plan and/or supplied translations (None: unchanged)."""

    plan: dict[str, Any] | None = None
    supplied: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DubPage:
    dubs: list[DubRecord]
    next_cursor: str | None  # None on the last page


def _json(value: Any) -> Any:
    # No JSON codec is registered on the pool: jsonb arrives as its text.
    return json.loads(value) if isinstance(value, str) else value


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _record(row: db.Record) -> DubRecord:
    values = dict(row)
    job_status = values.pop("job_status")
    job_error = _json(values.pop("job_error"))
    for name in ("options", "supplied", "media", "plan", "outputs"):
        values[name] = _json(values[name])
    if values["status"] == "dubbing" and job_status in ("failed", "cancelled"):
        values["status"] = "failed"
        if isinstance(job_error, dict) and job_error.get("message"):
            values["error"] = str(job_error["message"])
        else:
            values["error"] = f"the dubbing job was {job_status}"
    return DubRecord(**values)


def _field_error(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{name}: {message}", details={"fields": [{"field": name, "message": message}]}
    )


def _cursor(dub: DubRecord) -> str:
    raw = f"{_CURSOR_PREFIX}{dub.created_at.isoformat()}|{dub.id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _cursor_position(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError(cursor)
        when, dub_id = raw.removeprefix(_CURSOR_PREFIX).split("|")
        at = datetime.fromisoformat(when)
        if at.tzinfo is None:
            raise ValueError(cursor)
        return at, UUID(dub_id)
    except (ValueError, UnicodeDecodeError):
        raise _field_error("cursor", "not a cursor this server gave out") from None


async def _locked_row(conn: db.Connection, workspace_id: UUID, did: UUID, dub_id: Id) -> db.Record:
    """The dub's row locked for the transaction; NotFound (naming ``dub_id`` as given) when
    it is not the workspace's."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE d.id = $1 AND d.workspace_id = $2 FOR UPDATE OF d",
        did,
        workspace_id,
    )
    if row is None:
        raise NotFound(f"no dub with id {str(dub_id)!r}")
    return row


class DubStore:
    """The dubs of every workspace."""

    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def insert(self, conn: db.Connection, new: NewDub, job_id: UUID) -> None:
        """In the caller's transaction, the one that submits the dub's job."""
        await conn.execute(
            """
            INSERT INTO dubs (id, workspace_id, name, source_file_id, background_file_id,
                              foreground_file_id, owns_source, options, supplied, media, job_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10::jsonb, $11)
            """,
            new.id,
            new.workspace_id,
            clean(new.name)[:255] or "dub",
            new.source_file_id,
            new.background_file_id,
            new.foreground_file_id,
            new.owns_source,
            _dump(new.options),
            _dump(new.supplied),
            _dump(new.media),
            job_id,
        )

    async def get(self, workspace_id: UUID, dub_id: Id) -> DubRecord:
        """Raises NotFound for an unknown id, a malformed one or another workspace's."""
        did = parse_id(dub_id, "dub")
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE d.id = $1 AND d.workspace_id = $2",
            did,
            workspace_id,
        )
        if row is None:
            raise NotFound(f"no dub with id {str(dub_id)!r}")
        return _record(row)

    async def list(
        self,
        workspace_id: UUID,
        *,
        limit: int = 50,
        cursor: str | None = None,
        status: DubStatus | None = None,
    ) -> DubPage:
        """Newest first; ``cursor`` is the previous page's ``next_cursor``; ``status`` as a
        reader sees it (a dub whose job ended without it is ``failed``)."""
        if isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
            raise _field_error("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
        args: builtins.list[Any] = [workspace_id]
        where = "d.workspace_id = $1"
        if cursor is not None:
            at, after_id = _cursor_position(cursor)
            args += [at, after_id]
            where += " AND (d.created_at, d.id) < ($2, $3)"
        if status is not None:
            args.append(status)
            where += f" AND {_SEEN_STATUS} = ${len(args)}"
        args.append(limit + 1)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE {where} "
            f"ORDER BY d.created_at DESC, d.id DESC LIMIT ${len(args)}",
            *args,
        )
        dubs = [_record(row) for row in rows[:limit]]
        return DubPage(dubs, _cursor(dubs[-1]) if len(rows) > limit else None)

    async def delete(self, workspace_id: UUID, dub_id: Id) -> tuple[DubRecord, builtins.list[UUID]]:
        """The row, and the ids of every file it owns for the caller to delete next: its
        uploads and the outputs of all its jobs (a re-render's replaced ones too); NotFound
        as ``get``."""
        did = parse_id(dub_id, "dub")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await _locked_row(conn, workspace_id, did, dub_id)
            outputs = await conn.fetch(
                """
                SELECT f.id FROM files f JOIN jobs j ON j.id = f.job_id
                WHERE j.workspace_id = $2 AND j.type = 'dubbing' AND j.input->>'dub_id' = $1
                """,
                str(did),
                workspace_id,
            )
            await conn.execute("DELETE FROM dubs WHERE id = $1", did)
        dub = _record(row)
        owned = dict.fromkeys([*dub.file_ids(), *(r["id"] for r in outputs)])
        return dub, list(owned)

    async def start(
        self, conn: db.Connection, workspace_id: UUID, dub_id: UUID, job_id: UUID
    ) -> None:
        """In the transaction that submits a re-render: the dub is being dubbed by it."""
        await conn.execute(
            """
            UPDATE dubs SET status = 'dubbing', error = NULL, job_id = $3, updated_at = now()
            WHERE id = $1 AND workspace_id = $2
            """,
            dub_id,
            workspace_id,
            job_id,
        )

    async def set_plan(self, workspace_id: UUID, dub_id: UUID, plan: dict[str, Any]) -> None:
        await self._update(workspace_id, dub_id, "plan = $3::jsonb", _dump(plan))

    async def change(
        self,
        workspace_id: UUID,
        dub_id: Id,
        change: Callable[[DubRecord], DubChange],
    ) -> DubRecord:
        """Read the dub locked, store what ``change(dub)`` gives (its plan, its supplied
        translations) and bump its version. The change may raise (NotFound for a segment,
        ValidationFailed): nothing is written."""
        did = parse_id(dub_id, "dub")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await _locked_row(conn, workspace_id, did, dub_id)
            changed = change(_record(row))
            await conn.execute(
                """
                UPDATE dubs SET plan = coalesce($2::jsonb, plan),
                                supplied = coalesce($3::jsonb, supplied),
                                version = version + 1, updated_at = now()
                WHERE id = $1
                """,
                did,
                _dump(changed.plan),
                _dump(changed.supplied),
            )
        return await self.get(workspace_id, did)

    async def finish(
        self,
        workspace_id: UUID,
        dub_id: UUID,
        job_id: UUID,
        outputs: dict[str, Any],
    ) -> None:
        """The job's outputs (merged over earlier languages') and ``dubbed``, unless another
        job took the dub over meanwhile (a newer render owns its status)."""
        await self._pool.execute(
            """
            UPDATE dubs SET outputs = outputs || $4::jsonb, status = 'dubbed', error = NULL,
                            updated_at = now()
            WHERE id = $1 AND workspace_id = $2 AND job_id = $3
            """,
            dub_id,
            workspace_id,
            job_id,
            _dump(outputs),
        )

    async def fail(self, workspace_id: UUID, dub_id: UUID, job_id: UUID, error: str) -> None:
        await self._pool.execute(
            """
            UPDATE dubs SET status = 'failed', error = $4, updated_at = now()
            WHERE id = $1 AND workspace_id = $2 AND job_id = $3
            """,
            dub_id,
            workspace_id,
            job_id,
            clean(error)[:2000],
        )

    async def _update(self, workspace_id: UUID, dub_id: UUID, assignment: str, value: Any) -> None:
        await self._pool.execute(
            f"UPDATE dubs SET {assignment}, updated_at = now() WHERE id = $1 AND workspace_id = $2",
            dub_id,
            workspace_id,
            value,
        )
