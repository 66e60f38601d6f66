"""``GET /v1/admin/audit-logs/export``: the caller's workspace's audit log as one download.

``format=csv`` (the default) or ``json``, with the filters of ``GET /v1/audit-logs``
(``action``, ``actor``, ``target_type``, ``target_id``, ``since``, ``until``), over the whole
filtered range, newest first, streamed a page at a time so a long log never sits in memory.

CSV cells are safe to open in a spreadsheet: a cell that starts like a formula (``=``, ``+``,
``-``, ``@``, a tab or a carriage return) gets a leading ``'``, so a User-Agent or an e-mail
that someone chose cannot run as a formula on an auditor's machine. JSON is an array of the
listing's entries, exactly as ``/v1/audit-logs`` shows them.

The export itself is recorded first (``audit_log.exported``): a copy of the log that leaves
the server is an event the log keeps; if that entry cannot be written, nothing is sent.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Final, Literal

from aiohttp import web

from ..identity.audit_trail import AUDIT_TRAIL, audit
from ..identity.request_principal import principal_of
from ..store.audit import MAX_PAGE_SIZE, AuditEntry, AuditFilters, AuditLog
from .audit_logs import AuditEntryModel, AuditFilterQuery
from .bodies import read_query

__all__ = ["CSV_COLUMNS", "AuditExportQuery", "audit_admin_routes", "safe_cell"]

CSV_COLUMNS: Final = (
    "id",
    "created_at",
    "workspace_id",
    "action",
    "actor_display",
    "actor_user_id",
    "actor_api_key_id",
    "target_type",
    "target_id",
    "ip",
    "user_agent",
    "details",
    "prev_hash",
    "hash",
)
# What a spreadsheet reads as the start of a formula (OWASP's CSV injection list).
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_MEDIA: Final = {"csv": "text/csv", "json": "application/json"}


class AuditExportQuery(AuditFilterQuery):
    format: Literal["csv", "json"] = "csv"


def safe_cell(value: object) -> str:
    """``value`` as a CSV cell that no spreadsheet runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _row(entry: AuditEntry) -> list[str]:
    cells = (
        entry.id,
        entry.created_at.isoformat(),
        entry.workspace_id,
        entry.action,
        entry.actor_display,
        entry.actor_user_id,
        entry.actor_key_id,
        entry.target_type,
        entry.target_id,
        entry.ip,
        entry.user_agent,
        json.dumps(entry.details, sort_keys=True, separators=(",", ":")),
        entry.prev_hash.hex(),
        entry.hash.hex(),
    )
    return [safe_cell(cell) for cell in cells]


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


async def _pages(
    log: AuditLog,
    request: web.Request,
    filters: AuditFilters,
    first: list[AuditEntry],
    cursor: str | None,
) -> AsyncIterator[list[AuditEntry]]:
    yield first
    workspace_id = principal_of(request).workspace_id
    while cursor is not None:
        page = await log.list(workspace_id, limit=MAX_PAGE_SIZE, cursor=cursor, filters=filters)
        cursor = page.next_cursor
        yield page.entries


async def export_audit_logs(request: web.Request) -> web.StreamResponse:
    principal = principal_of(request)
    query = read_query(request, AuditExportQuery)
    filters = query.filters()
    log = request.config_dict[AUDIT_TRAIL].log
    # The first page before anything is sent: a bad filter is still a clean 4xx.
    first = await log.list(principal.workspace_id, limit=MAX_PAGE_SIZE, filters=filters)
    given = query.model_dump(mode="json", exclude_none=True, exclude={"format"})
    # Before the copy leaves: an export the log cannot record does not happen (a 503).
    await audit(
        request,
        "audit_log.exported",
        "workspace",
        principal.workspace_id,
        details={"format": query.format, "filters": given},
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"audit-log-{principal.workspace_name}-{stamp}.{query.format}"
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{_MEDIA[query.format]}; charset=utf-8",
            # Workspace names are letters, digits, '.', '_' and '-' (store/workspaces.py).
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    started = False
    if query.format == "csv":
        await response.write(_csv([list(CSV_COLUMNS)]))
    else:
        await response.write(b"[")
    async for entries in _pages(log, request, filters, first.entries, first.next_cursor):
        if query.format == "csv":
            await response.write(_csv([_row(entry) for entry in entries]))
            continue
        for entry in entries:
            text = AuditEntryModel.of(entry).model_dump_json()
            await response.write((("," if started else "") + text).encode())
            started = True
    if query.format == "json":
        await response.write(b"]")
    await response.write_eof()
    return response


def audit_admin_routes() -> list[web.RouteDef]:
    """Paths relative to ``/v1/admin`` (rest/admin.py)."""
    return [web.get("/audit-logs/export", export_audit_logs, allow_head=False)]
