"""API keys against the real session database: issue, authenticate, revoke, list."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest

from fixtures_services import unique_name
from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store.keys import ROLES, ApiKeyRepository, Principal, Role

# An id no test creates; fixed (not uuid4()) so every test worker collects the same ids.
NOBODY = "3d8d3f1c-0fbf-45c5-b87d-056a335f8070"


@pytest.fixture
def keys(db_pool: db.Pool) -> ApiKeyRepository:
    return ApiKeyRepository(db_pool)


async def test_created_key_authenticates_with_its_workspace_and_role(
    keys: ApiKeyRepository,
) -> None:
    workspace = unique_name("auth")
    key, plaintext = await keys.create(workspace=workspace, role="editor", name="ci")
    assert plaintext.startswith("vs_") and len(plaintext) == 43
    assert key.prefix == plaintext[:12]
    assert (key.workspace_name, key.role, key.name) == (workspace, "editor", "ci")
    assert key.last_used_at is None and not key.revoked

    principal = await keys.authenticate(plaintext)
    assert principal == Principal(
        key_id=key.id, workspace_id=key.workspace_id, workspace_name=workspace, role="editor"
    )


async def test_default_workspace_and_role(keys: ApiKeyRepository) -> None:
    key, _ = await keys.create()
    assert (key.workspace_name, key.role, key.name) == ("default", "owner", None)


@pytest.mark.parametrize(
    "presented",
    ["", "vs_", "not-a-key", "Bearer vs_x", "vs_" + "A" * 39, "vs_" + "A" * 41, "vs_" + "!" * 40],
)
async def test_malformed_keys_do_not_authenticate(keys: ApiKeyRepository, presented: str) -> None:
    assert await keys.authenticate(presented) is None


async def test_unknown_and_tampered_keys_do_not_authenticate(keys: ApiKeyRepository) -> None:
    _, plaintext = await keys.create(workspace=unique_name("tamper"))
    assert await keys.authenticate("vs_" + "A" * 40) is None
    # Same prefix (so the row is found), different secret: the hash comparison rejects it.
    last = "B" if plaintext[-1] != "B" else "C"
    assert await keys.authenticate(plaintext[:-1] + last) is None
    assert await keys.authenticate(plaintext + " ") is None


async def test_revoked_key_no_longer_authenticates(keys: ApiKeyRepository) -> None:
    key, plaintext = await keys.create(workspace=unique_name("revoke"))
    revoked = await keys.revoke(key.prefix)
    assert revoked.id == key.id and revoked.revoked_at is not None
    assert await keys.authenticate(plaintext) is None
    # Idempotent: revoking again keeps the original time.
    assert (await keys.revoke(str(key.id))).revoked_at == revoked.revoked_at


async def test_revoke_by_id_and_by_full_key(keys: ApiKeyRepository) -> None:
    workspace = unique_name("revoke-ways")
    by_id, _ = await keys.create(workspace=workspace)
    by_key, plaintext = await keys.create(workspace=workspace)
    assert (await keys.revoke(str(by_id.id))).revoked
    assert (await keys.revoke(plaintext)).id == by_key.id


@pytest.mark.parametrize("ident", ["vs_nothing", NOBODY, ""])
async def test_revoke_unknown_key_is_not_found(keys: ApiKeyRepository, ident: str) -> None:
    with pytest.raises(NotFound):
        await keys.revoke(ident)


@pytest.mark.parametrize("role", ["root", "", "Owner", "superuser"])
async def test_invalid_role_is_rejected(keys: ApiKeyRepository, role: str) -> None:
    with pytest.raises(ValidationFailed):
        await keys.create(workspace=unique_name("role"), role=role)


@pytest.mark.parametrize("workspace", ["", "has space", "-leading-dash", "x" * 65, "ünïcode"])
async def test_invalid_workspace_name_is_rejected(keys: ApiKeyRepository, workspace: str) -> None:
    with pytest.raises(ValidationFailed):
        await keys.create(workspace=workspace)


async def test_only_the_hash_is_stored(keys: ApiKeyRepository, db_pool: db.Pool) -> None:
    key, plaintext = await keys.create(workspace=unique_name("at-rest"), name="hash check")
    row_text = await db_pool.fetchval(
        "SELECT row_to_json(k)::text FROM api_keys k WHERE id = $1", key.id
    )
    assert plaintext not in row_text
    assert plaintext[12:] not in row_text  # not even the secret part
    stored = await db_pool.fetchval("SELECT key_hash FROM api_keys WHERE id = $1", key.id)
    assert bytes(stored) == hashlib.sha256(plaintext.encode()).digest()


async def test_last_used_is_touched_at_most_once_a_minute(
    keys: ApiKeyRepository, db_pool: db.Pool
) -> None:
    key, plaintext = await keys.create(workspace=unique_name("touch"))

    async def last_used() -> object:
        return await db_pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key.id)

    assert await keys.authenticate(plaintext) is not None
    first = await last_used()
    assert first is not None
    assert await keys.authenticate(plaintext) is not None
    assert await last_used() == first  # within the minute: no write
    await db_pool.execute(
        "UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE id = $1", key.id
    )
    stale = await last_used()
    assert await keys.authenticate(plaintext) is not None
    assert await last_used() != stale


async def test_list_filters_by_workspace_and_includes_revoked(keys: ApiKeyRepository) -> None:
    one, two = unique_name("list-a"), unique_name("list-b")
    a1, _ = await keys.create(workspace=one, role="viewer")
    a2, _ = await keys.create(workspace=one)
    b1, _ = await keys.create(workspace=two)
    await keys.revoke(a2.prefix)

    listed = await keys.list(workspace=one)
    assert [k.id for k in listed] == [a1.id, a2.id]
    assert listed[1].revoked
    everything = {k.id for k in await keys.list()}
    assert {a1.id, a2.id, b1.id} <= everything
    assert await keys.list(workspace=unique_name("empty")) == []


async def test_concurrent_creates_share_one_new_workspace(
    keys: ApiKeyRepository, db_pool: db.Pool
) -> None:
    workspace = unique_name("race")
    created = await asyncio.gather(*(keys.create(workspace=workspace) for _ in range(8)))
    assert len({key.workspace_id for key, _ in created}) == 1
    assert len({plaintext for _, plaintext in created}) == 8
    count = await db_pool.fetchval("SELECT count(*) FROM workspaces WHERE name = $1", workspace)
    assert count == 1


def test_role_ranking() -> None:
    assert ROLES == ("owner", "admin", "editor", "viewer")

    def principal(role: Role) -> Principal:
        ids = {"key_id": uuid.uuid4(), "workspace_id": uuid.uuid4()}
        return Principal(workspace_name="w", role=role, **ids)

    editor = principal("editor")
    assert editor.has_role("viewer") and editor.has_role("editor")
    assert not editor.has_role("admin") and not editor.has_role("owner")
    assert principal("owner").has_role("admin")
