"""Everything a workspace owns in the database, found generically: for data export, deletion
and the check that a deletion left nothing behind.

The tables are read from the catalog, not listed here, so a table a later migration adds is
exported and checked without anyone remembering to: every table with a ``workspace_id``
column, plus each table that has none but hangs off one of those by a foreign key (a
conversation's turns, a history item's audio). ``owned`` tables are the ones whose
``workspace_id`` references ``workspaces``: deleting the workspace row empties them (ON DELETE
CASCADE). The audit log has a ``workspace_id`` but no reference on purpose (its records outlive
the workspace), so it is exported and never deleted.

Secrets never leave: a column whose name says it holds a hash, a sealed secret, a password or
a key is written as ``"[redacted]"``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from voicestream.store import db

__all__ = [
    "REDACTED",
    "WorkspaceTable",
    "count_owned_rows",
    "delete_workspace_rows",
    "file_keys",
    "redact",
    "table_rows",
    "workspace_tables",
]

REDACTED: Final = "[redacted]"
_SECRET_COLUMN: Final = re.compile(
    r"(hash|sealed|secret|password|token|credential_id|public_key|^key$|challenge)"
)
_FETCH_ROWS: Final = 500


@dataclass(frozen=True, slots=True)
class WorkspaceTable:
    name: str
    # How a row finds its workspace: its own column, or its parent's through a foreign key.
    parent: str | None = None
    column: str | None = None  # this table's foreign-key column
    parent_column: str | None = None  # what it references in the parent
    owned: bool = False  # emptied by deleting the workspace row

    def select(self) -> str:
        """Every row of the workspace as JSON (``$1``: the workspace id)."""
        table = _ident(self.name)
        if self.parent is None:
            return f"SELECT to_jsonb(t) FROM {table} t WHERE t.workspace_id = $1"
        assert self.column is not None and self.parent_column is not None
        return (
            f"SELECT to_jsonb(t) FROM {table} t JOIN {_ident(self.parent)} p "
            f"ON t.{_ident(self.column)} = p.{_ident(self.parent_column)} "
            "WHERE p.workspace_id = $1"
        )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def workspace_tables(pool: db.Pool | db.Connection) -> list[WorkspaceTable]:
    """The tables holding a workspace's rows, parents before their children."""
    direct = await pool.fetch(
        """
        SELECT c.table_name,
               EXISTS (
                   SELECT 1 FROM pg_constraint k
                   JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
                   WHERE k.contype = 'f' AND k.conrelid = format('%I', c.table_name)::regclass
                     AND k.confrelid = 'workspaces'::regclass AND a.attname = 'workspace_id'
               ) AS owned
        FROM information_schema.columns c
        JOIN information_schema.tables t
          ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = current_schema() AND c.column_name = 'workspace_id'
          AND t.table_type = 'BASE TABLE'
        ORDER BY c.table_name
        """
    )
    tables = [WorkspaceTable(row["table_name"], owned=row["owned"]) for row in direct]
    with_workspace = {table.name for table in tables}
    owned = {table.name for table in tables if table.owned}
    children = await pool.fetch(
        """
        SELECT child.relname AS child, parent.relname AS parent,
               ca.attname AS column, pa.attname AS parent_column
        FROM pg_constraint k
        JOIN pg_class child ON child.oid = k.conrelid
        JOIN pg_class parent ON parent.oid = k.confrelid
        JOIN pg_attribute ca ON ca.attrelid = k.conrelid AND ca.attnum = k.conkey[1]
        JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = k.confkey[1]
        WHERE k.contype = 'f' AND cardinality(k.conkey) = 1
          AND child.relnamespace = current_schema()::regnamespace
        ORDER BY child.relname, parent.relname
        """
    )
    seen: set[str] = set()
    for row in children:
        child, parent = row["child"], row["parent"]
        if child in with_workspace or child in seen or parent not in with_workspace:
            continue
        seen.add(child)
        tables.append(
            WorkspaceTable(
                child,
                parent=parent,
                column=row["column"],
                parent_column=row["parent_column"],
                # A child of an owned table goes with its parent only if its reference cascades;
                # counted either way, so a leftover shows up in the check.
                owned=parent in owned,
            )
        )
    return tables


def redact(row: dict[str, Any]) -> dict[str, Any]:
    return {
        name: (REDACTED if value is not None and _SECRET_COLUMN.search(name) else value)
        for name, value in row.items()
    }


async def table_rows(
    pool: db.Pool, table: WorkspaceTable, workspace_id: UUID
) -> AsyncIterator[dict[str, Any]]:
    """The workspace's rows of ``table``, redacted, a few hundred fetched at a time."""
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        cursor = conn.cursor(table.select(), workspace_id, prefetch=_FETCH_ROWS)
        async for record in cursor:
            value = record[0]
            row = json.loads(value) if isinstance(value, str) else dict(value)
            yield redact(row)


async def count_owned_rows(pool: db.Pool | db.Connection, workspace_id: UUID) -> dict[str, int]:
    """Rows per owned table (children included) that still name the workspace."""
    counts: dict[str, int] = {}
    for table in await workspace_tables(pool):
        if not table.owned:
            continue
        select = table.select().replace("SELECT to_jsonb(t)", "SELECT count(*)", 1)
        counts[table.name] = int(await pool.fetchval(select, workspace_id))
    counts["workspaces"] = int(
        await pool.fetchval("SELECT count(*) FROM workspaces WHERE id = $1", workspace_id)
    )
    return counts


async def file_keys(pool: db.Pool | db.Connection, workspace_id: UUID) -> list[str]:
    """Where each of the workspace's files keeps its bytes in object storage."""
    rows = await pool.fetch("SELECT storage_key FROM files WHERE workspace_id = $1", workspace_id)
    return [row["storage_key"] for row in rows]


async def delete_workspace_rows(pool: db.Pool, workspace_id: UUID) -> bool:
    """Delete the workspace row, and with it (ON DELETE CASCADE) every owned row; False when
    it was already gone."""
    deleted = await pool.fetchval("DELETE FROM workspaces WHERE id = $1 RETURNING id", workspace_id)
    return deleted is not None
