"""Forward-only SQL migrations shipped in ``voicestream/store/migrations/NNNN_name.sql``.

Each pending file runs in its own transaction together with its row in
``schema_migrations``, so a migration is either fully applied and recorded or not at all.
A session advisory lock serializes concurrent runs (several server workers or a CLI
starting at once); whoever waits finds the work done and applies nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from importlib import resources

from voicestream.store import db

__all__ = ["Migration", "load_migrations", "migrate"]

log = logging.getLogger(__name__)

# Arbitrary but fixed: the first 8 bytes of sha256(b"voicestream.store.migrate"), as a
# signed bigint. Only has to differ from other advisory lock users of the same database.
_LOCK_ID = -7_507_781_380_628_975_033
# Migrations may rewrite big tables; they are exempt from the pool's per-call limits.
_MIGRATION_TIMEOUT_S = 3600.0
_NAME = re.compile(r"^(\d{4}_[a-z0-9_]+)\.sql$")

_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: str  # file name without .sql, e.g. "0001_init"
    sql: str


def load_migrations() -> list[Migration]:
    """Blocking. The shipped migrations in application order."""
    folder = resources.files("voicestream.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(match.group(1), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def migrate(target: db.Pool | db.Connection) -> list[str]:
    """Apply pending migrations; return the versions applied by this call (oldest first)."""
    migrations = await asyncio.to_thread(load_migrations)
    if db.is_pool(target):
        async with target.acquire() as conn:
            return await _migrate(conn, migrations)
    return await _migrate(target, migrations)


async def _migrate(conn: db.Connection, migrations: list[Migration]) -> list[str]:
    # Waiting for the lock is not a runaway statement: lift the session's statement
    # timeout for the duration (RESET restores the value the connection started with).
    await conn.execute("SET statement_timeout = 0")
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID, timeout=_MIGRATION_TIMEOUT_S)
    try:
        await conn.execute(_SCHEMA_MIGRATIONS)
        rows = await conn.fetch("SELECT version FROM schema_migrations")
        applied = {row["version"] for row in rows}
        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql, timeout=_MIGRATION_TIMEOUT_S)
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
                )
            log.info("applied migration %s", migration.version)
            done.append(migration.version)
        return done
    finally:
        # On a broken connection the server has dropped the lock with the session already.
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
            await conn.execute("RESET statement_timeout")
