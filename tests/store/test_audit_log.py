"""The audit log's chain against real PostgreSQL: it verifies, concurrent appends keep one
chain, the database refuses to change it, and a change made anyway is found and named.

Tests that count or break the chain use a database of their own: the session database's
chain is shared by every test that records something.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio

from fixtures_services import OwnDatabase, own_database
from voicestream.errors import ValidationFailed
from voicestream.store import db
from voicestream.store.audit import (
    CLI_ACTOR,
    GENESIS_HASH,
    Actor,
    AuditFilters,
    AuditLog,
    entry_hash,
)
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository


@pytest_asyncio.fixture(loop_scope="session")
async def own_db(embedded_services: ServiceURLs) -> AsyncIterator[OwnDatabase]:
    async with own_database(embedded_services) as database:
        yield database


async def _record_some(log: AuditLog, count: int) -> list[int]:
    workspace = uuid.uuid4()
    ids = []
    for n in range(count):
        entry = await log.record(
            "agent.updated",
            actor=Actor(display="vs_abcdefghi", key_id=uuid.uuid4()),
            workspace_id=workspace,
            target_type="agent",
            target_id=uuid.uuid4(),
            ip="2001:db8::1" if n % 2 else "::ffff:192.0.2.7",
            user_agent="pytest/1 ünïcode \udcff",  # a header byte that is not UTF-8
            details={"changed": ["name", "voice"], "n": n, "note": "ça va\x00"},
        )
        ids.append(entry.id)
    return ids


async def test_the_chain_links_every_entry_and_verifies(own_db: OwnDatabase) -> None:
    log = AuditLog(own_db.pool)
    assert (await log.verify()).ok and (await log.verify()).checked == 0
    await _record_some(log, 5)
    rows = await own_db.pool.fetch("SELECT id, prev_hash, hash FROM audit_log ORDER BY id")
    assert bytes(rows[0]["prev_hash"]) == GENESIS_HASH
    for before, after in itertools.pairwise(rows):
        assert bytes(after["prev_hash"]) == bytes(before["hash"])
    result = await log.verify(page_size=2)  # several pages
    assert result.ok and result.checked == 5 and result.broken_id is None
    assert result.last_hash == bytes(rows[-1]["hash"])
    # What was stored is what was hashed: mapped IPv4 plain, NUL gone, unicode intact.
    page = await log.list(await own_db.pool.fetchval("SELECT workspace_id FROM audit_log"))
    ips = {e.ip for e in page.entries}
    assert ips == {"192.0.2.7", "2001:db8::1"}
    assert all(e.details["note"] == "ça va" and entry_hash(e) == e.hash for e in page.entries)
    assert {e.user_agent for e in page.entries} == {"pytest/1 ünïcode ?"}


async def test_concurrent_appends_keep_one_chain(own_db: OwnDatabase) -> None:
    log = AuditLog(own_db.pool)
    await asyncio.gather(
        *(
            log.record("key.created", actor=CLI_ACTOR, target_type="api_key", target_id=str(n))
            for n in range(50)
        )
    )
    result = await log.verify()
    assert result.ok, result
    assert result.checked == 50
    forks = await own_db.pool.fetchval("SELECT count(*) - count(DISTINCT prev_hash) FROM audit_log")
    assert forks == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'key.revoked' WHERE id = $1",
        "DELETE FROM audit_log WHERE id = $1",
        "TRUNCATE audit_log",
    ],
    ids=["update", "delete", "truncate"],
)
async def test_the_database_refuses_to_change_entries(db_pool: db.Pool, statement: str) -> None:
    entry = await AuditLog(db_pool).record("key.created", actor=CLI_ACTOR)
    args = (entry.id,) if "$1" in statement else ()
    with pytest.raises(db.PostgresError, match="append-only"):
        await db_pool.execute(statement, *args)
    assert await db_pool.fetchval("SELECT action FROM audit_log WHERE id = $1", entry.id) == (
        "key.created"
    )


async def _drop_guard(own_db: OwnDatabase) -> None:
    # What an attacker with the table owner's (or the superuser's) rights could do.
    await own_db.admin.execute("DROP TRIGGER audit_log_no_update_delete ON audit_log")


async def test_a_changed_entry_is_named(own_db: OwnDatabase) -> None:
    log = AuditLog(own_db.pool)
    ids = await _record_some(log, 4)
    await _drop_guard(own_db)
    await own_db.admin.execute(
        'UPDATE audit_log SET details = \'{"changed": ["nothing"]}\' WHERE id = $1', ids[2]
    )
    result = await log.verify()
    assert not result.ok
    assert (result.broken_id, result.checked) == (ids[2], 2)
    assert "changed" in (result.reason or "")


async def test_a_rehashed_entry_breaks_the_next_link(own_db: OwnDatabase) -> None:
    log = AuditLog(own_db.pool)
    ids = await _record_some(log, 4)
    await _drop_guard(own_db)
    # A careful attacker also recomputes the changed entry's own hash...
    await own_db.admin.execute(
        "UPDATE audit_log SET actor_display = 'someone' WHERE id = $1", ids[1]
    )
    changed = (await log.list(await _workspace(own_db, ids[1]), limit=10)).entries
    forged = next(e for e in changed if e.id == ids[1])
    await own_db.admin.execute(
        "UPDATE audit_log SET hash = $2 WHERE id = $1", ids[1], entry_hash(forged)
    )
    # ...which the next entry's prev_hash still contradicts.
    result = await log.verify()
    assert (result.ok, result.broken_id) == (False, ids[2])
    assert f"entry {ids[1]}" in (result.reason or "")


async def test_a_removed_entry_is_found(own_db: OwnDatabase) -> None:
    log = AuditLog(own_db.pool)
    ids = await _record_some(log, 3)
    await _drop_guard(own_db)
    await own_db.admin.execute("DELETE FROM audit_log WHERE id = $1", ids[1])
    result = await log.verify()
    assert (result.ok, result.broken_id, result.checked) == (False, ids[2], 1)


async def _workspace(own_db: OwnDatabase, entry_id: int) -> uuid.UUID:
    found: uuid.UUID = await own_db.pool.fetchval(
        "SELECT workspace_id FROM audit_log WHERE id = $1", entry_id
    )
    return found


async def test_listing_pages_newest_first_and_filters(db_pool: db.Pool) -> None:
    log = AuditLog(db_pool)
    workspace, other = uuid.uuid4(), uuid.uuid4()
    key, _ = await ApiKeyRepository(db_pool).create(workspace=f"audit-{uuid.uuid4().hex[:8]}")
    by_key = Actor(key_id=key.id)  # shown by the key's prefix
    made = [
        await log.record("key.created", actor=CLI_ACTOR, workspace_id=workspace),
        await log.record(
            "agent.created",
            actor=by_key,
            workspace_id=workspace,
            target_type="agent",
            target_id="a1",
        ),
        await log.record("key_x.created", actor=by_key, workspace_id=workspace),
        await log.record("key.revoked", actor=by_key, workspace_id=workspace),
        await log.record(
            "agent.deleted",
            actor=by_key,
            workspace_id=workspace,
            target_type="agent",
            target_id="a1",
        ),
    ]
    await log.record("key.created", actor=CLI_ACTOR, workspace_id=other)
    assert made[1].actor_display == key.prefix

    seen, cursor = [], None
    while True:
        page = await log.list(workspace, limit=2, cursor=cursor)
        seen += [e.id for e in page.entries]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [e.id for e in reversed(made)]

    async def ids(**filters: object) -> list[int]:
        page = await log.list(workspace, filters=AuditFilters(**filters))  # type: ignore[arg-type]
        return [e.id for e in page.entries]

    assert await ids(action="key.created") == [made[0].id]
    # A family is literal: "key_x." is not in "key.", although _ is a LIKE wildcard.
    assert await ids(action="key.") == [made[3].id, made[0].id]
    assert await ids(action="key.*") == [made[3].id, made[0].id]
    assert await ids(actor="cli") == [made[0].id]
    assert await ids(actor=str(key.id)) == [made[4].id, made[3].id, made[2].id, made[1].id]
    assert await ids(actor=key.prefix, action="agent.") == [made[4].id, made[1].id]
    assert await ids(target_type="agent", target_id="a1") == [made[4].id, made[1].id]
    assert await ids(since=made[3].created_at) == [made[4].id, made[3].id]
    assert await ids(until=made[1].created_at) == [made[0].id]
    assert await ids(since=made[4].created_at + timedelta(seconds=1)) == []

    for bad in (
        {"cursor": "nope"},
        {"cursor": "YTE6LTE"},  # "a1:-1"
        {"limit": 0},
        {"limit": 201},
        {"filters": AuditFilters(action="KEY.%")},
        {"filters": AuditFilters(since=made[1].created_at, until=made[0].created_at)},
    ):
        with pytest.raises(ValidationFailed):
            await log.list(workspace, **bad)  # type: ignore[arg-type]


async def test_caller_mistakes_are_refused_before_writing(db_pool: db.Pool) -> None:
    log = AuditLog(db_pool)
    with pytest.raises(ValueError, match="action"):
        await log.record("Key Created", actor=CLI_ACTOR)
    with pytest.raises(TypeError, match="float"):
        await log.record("key.created", actor=CLI_ACTOR, details={"ratio": 0.5})
    with pytest.raises(TypeError, match="bytes"):
        await log.record("key.created", actor=CLI_ACTOR, details={"secret": b"x"})
