"""``GET /v1/admin/audit-logs/export``: the workspace's audit log as CSV or JSON.

The export holds exactly what ``GET /v1/audit-logs`` pages through for the same filters (past
one page of the store), with a spreadsheet-safe CSV (no cell starts like a formula), the right
content type and a file name; the export itself is recorded.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from helpers import StartedServer
from server.workspace_people import call, house_error, team
from voicestream.identity.audit_trail import AUDIT_TRAIL
from voicestream.rest.admin_audit import CSV_COLUMNS
from voicestream.store.audit import MAX_PAGE_SIZE, Actor

FORMULAS = ('=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB")


async def _listing(
    http: aiohttp.ClientSession, server: StartedServer, token: str, query: str
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, page = await call(
            http, server, "GET", f"/v1/audit-logs?limit=200&{query}{cursor}", token=token
        )
        assert status == 200, page
        entries += page["data"]
        if page["next_cursor"] is None:
            return entries
        cursor = f"&cursor={page['next_cursor']}"


async def _export(
    http: aiohttp.ClientSession, server: StartedServer, token: str, query: str
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{server.url}/v1/admin/audit-logs/export?{query}", headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def test_the_export_is_the_listing_in_csv_and_json(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    name, workspace_id, people = await team(server)
    owner = people["owner"]
    since = quote(datetime.now(UTC).isoformat())
    log = server.app[AUDIT_TRAIL].log
    # More than one page of the store, some with cells a spreadsheet would run.
    for n in range(MAX_PAGE_SIZE + 5):
        await log.record(
            "test.exported",
            actor=Actor(display=FORMULAS[n % len(FORMULAS)]),
            workspace_id=uuid.UUID(workspace_id),
            target_type="thing",
            target_id=f"-{n}",
            user_agent=FORMULAS[n % len(FORMULAS)],
            details={"n": n},
        )
    query = f"since={since}&action=test."
    listed = await _listing(http, server, owner.token, query)
    assert len(listed) == MAX_PAGE_SIZE + 5

    status, headers, body = await _export(http, server, owner.token, query + "&format=json")
    assert status == 200, body
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(body) == listed

    status, headers, body = await _export(http, server, owner.token, query + "&format=csv")
    assert status == 200, body
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = headers["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="audit-log-{name}-')
    assert disposition.endswith('.csv"')
    header, *rows = list(csv.reader(io.StringIO(body.decode())))
    assert tuple(header) == CSV_COLUMNS
    assert [int(row[0]) for row in rows] == [entry["id"] for entry in listed]
    column = {name: index for index, name in enumerate(CSV_COLUMNS)}
    for row, entry in zip(rows, listed, strict=True):
        assert row[column["action"]] == entry["action"]
        assert row[column["hash"]] == entry["hash"]
        assert json.loads(row[column["details"]]) == entry["details"]
        for field in ("actor_display", "user_agent", "target_id"):
            assert row[column[field]][:1] not in ("=", "+", "-", "@", "\t", "\r"), row
        assert row[column["user_agent"]] == "'" + entry["user_agent"]
        assert row[column["target_id"]] == "'" + entry["target"]["id"]

    exported = await _listing(http, server, owner.token, "action=audit_log.exported")
    assert [e["details"]["format"] for e in exported] == ["csv", "json"]
    assert exported[0]["details"]["filters"]["action"] == "test."


async def test_the_export_refuses_bad_input_and_other_roles(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, _, people = await team(server)
    owner = people["owner"].token
    for query in (
        "format=xml",
        "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
        "since=2026-01-01",  # no offset: ambiguous
        "colour=blue",
        "format=csv&format=json",
        "action=" + "x" * 101,
    ):
        status, _, body = await _export(http, server, owner, query)
        assert status == 422, (query, body)
        house_error(json.loads(body), "invalid_request")
    for role in ("editor", "viewer"):
        status, _, body = await _export(http, server, people[role].token, "format=csv")
        assert status == 403, body
