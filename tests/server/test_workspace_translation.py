"""A workspace's own dubbing translator (``/v1/workspaces/{id}/translation``) through the real
server: who may read and set it, its validation, the key sealed and never shown, and the
address rule the operator relaxes (the session's server allows private addresses; the rule
itself is checked on the domain service with a pool of that server and private ones refused).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import pytest

from fixtures_services import unique_name
from server.workspace_people import call, house_error, team
from voicestream.dubbing.workspace_translators import WorkspaceTranslators
from voicestream.errors import ValidationFailed
from voicestream.rest.resources import POOL, SETTINGS
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.secrets import SecretBox
from voicestream.store.workspace_translators import WorkspaceTranslatorRepository

Server = Any
KEY = "sk-translation-key-0123456789"
ENDPOINT = "http://127.0.0.1:9/v1"


def _path(workspace_id: str | uuid.UUID) -> str:
    return f"/v1/workspaces/{workspace_id}/translation"


async def _stored(server: Server, workspace_id: str) -> Any:
    return await server.app[POOL].fetchrow(
        "SELECT * FROM workspace_translators WHERE workspace_id = $1", uuid.UUID(workspace_id)
    )


async def test_admins_set_the_translator_members_read_it_and_the_key_is_never_shown(
    server: Server, http: aiohttp.ClientSession
) -> None:
    _, workspace_id, people = await team(server)
    path = _path(workspace_id)
    status, empty = await call(http, server, "GET", path, token=people["viewer"].token)
    assert status == 200, empty
    assert empty == {
        "configured": False,
        "base_url": None,
        "model": None,
        "api_key_set": False,
        "updated_at": None,
        "server_translator": False,  # the session's server has none
    }
    body = {"base_url": ENDPOINT, "model": "translate-1", "api_key": KEY}
    for role in ("editor", "viewer"):
        for method, sent in (("PUT", body), ("DELETE", None)):
            status, data = await call(http, server, method, path, sent, token=people[role].token)
            assert status == 403, (role, method, data)
            house_error(data, "forbidden")
    assert await _stored(server, workspace_id) is None

    status, saved = await call(http, server, "PUT", path, body, token=people["admin"].token)
    assert status == 200, saved
    assert saved["configured"] and saved["api_key_set"]
    assert (saved["base_url"], saved["model"]) == (ENDPOINT, "translate-1")
    assert KEY not in json.dumps(saved)
    status, read = await call(http, server, "GET", path, token=people["viewer"].token)
    assert status == 200 and read == saved and KEY not in json.dumps(read)
    row = await _stored(server, workspace_id)
    assert row["api_key_sealed"].startswith(SecretBox.CURRENT_PREFIX)
    assert KEY not in row["api_key_sealed"]
    changes = await server.app[POOL].fetch(
        "SELECT details::text AS details FROM audit_log WHERE workspace_id = $1 AND action = $2",
        uuid.UUID(workspace_id),
        "workspace.translation_changed",
    )
    assert len(changes) == 1 and KEY not in changes[0]["details"]

    # Without api_key: kept while the endpoint stays, dropped when it moves; null removes it.
    owner = people["owner"].token
    same = {"base_url": ENDPOINT, "model": "translate-2"}
    status, kept = await call(http, server, "PUT", path, same, token=owner)
    assert status == 200 and kept["api_key_set"] and kept["model"] == "translate-2", kept
    assert (await _stored(server, workspace_id))["api_key_sealed"] == row["api_key_sealed"]
    moved = {"base_url": "http://127.0.0.1:10/v1", "model": "translate-2"}
    status, dropped = await call(http, server, "PUT", path, moved, token=owner)
    assert status == 200 and not dropped["api_key_set"], dropped
    status, _ = await call(http, server, "PUT", path, body, token=owner)
    status, removed = await call(http, server, "PUT", path, {**body, "api_key": None}, token=owner)
    assert status == 200 and not removed["api_key_set"], removed

    for _ in range(2):  # idempotent
        status, _ = await call(http, server, "DELETE", path, token=people["admin"].token)
        assert status == 204
    status, gone = await call(http, server, "GET", path, token=owner)
    assert status == 200 and gone["configured"] is False and gone["base_url"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "m"}, "base_url"),
        ({"base_url": ENDPOINT}, "model"),
        ({"base_url": ENDPOINT, "model": " "}, "model"),
        ({"base_url": "ftp://example.com/v1", "model": "m"}, "base_url"),
        ({"base_url": "example.com/v1", "model": "m"}, "base_url"),
        ({"base_url": "http://exa mple.com/v1", "model": "m"}, "base_url"),
        ({"base_url": ENDPOINT, "model": "m", "api_key": ""}, "api_key"),
        ({"base_url": ENDPOINT, "model": "m", "temperature": 0}, "temperature"),
        ({"base_url": ENDPOINT, "model": "m" * 201}, "model"),
    ],
)
async def test_bad_settings_are_a_422_naming_the_field(
    server: Server, http: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    key, secret = await ApiKeyRepository(server.app[POOL]).create(
        workspace=unique_name("tr-bad"), role="owner"
    )
    workspace_id = str(key.workspace_id)
    status, data = await call(http, server, "PUT", _path(workspace_id), body, token=secret)
    assert status == 422, data
    house_error(data, "invalid_request")
    assert field in json.dumps(data["error"]), data
    assert await _stored(server, workspace_id) is None


async def test_another_workspace_is_not_found(server: Server, http: aiohttp.ClientSession) -> None:
    _, other, _ = await team(server)
    _, mine, people = await team(server)
    body = {"base_url": ENDPOINT, "model": "m"}
    for workspace_id in (other, "not-a-uuid"):
        for method in ("GET", "PUT", "DELETE"):
            status, data = await call(
                http, server, method, _path(workspace_id), body, token=people["owner"].token
            )
            assert status == 404, (workspace_id, method, data)
            house_error(data, "not_found")
    assert await _stored(server, other) is None and await _stored(server, mine) is None


async def test_private_endpoints_are_refused_unless_the_operator_allows_them(
    server: Server,
) -> None:
    pool = server.app[POOL]
    key, _ = await ApiKeyRepository(pool).create(workspace=unique_name("tr-strict"), role="owner")
    workspace_id = key.workspace_id
    box = SecretBox("a-server-secret-for-the-translator-tests-only")
    repo = WorkspaceTranslatorRepository(pool)
    strict = WorkspaceTranslators(repo, box, allow_private=False)
    settings = server.app[SETTINGS]
    for url in (
        "http://127.0.0.1:8080/v1",
        "http://10.0.0.8/v1",
        "http://[::1]/v1",
        "http://169.254.169.254/v1",
    ):
        with pytest.raises(ValidationFailed) as refused:
            await strict.put(workspace_id, base_url=url, model="m", api_key=KEY)
        assert "public" in refused.value.message and "base_url" in refused.value.message
        assert "VOICESTREAM_WEBHOOK_ALLOW_PRIVATE" in refused.value.message
    assert await repo.get(workspace_id) is None
    assert await strict.translator(workspace_id, settings) is None  # nor has the server one

    # Stored while allowed, then refused at use once the operator no longer allows it.
    lenient = WorkspaceTranslators(repo, box, allow_private=True)
    await lenient.put(workspace_id, base_url=ENDPOINT, model="m", api_key=KEY)
    with pytest.raises(ValidationFailed):
        await strict.translator(workspace_id, settings)
    translator = await lenient.translator(workspace_id, settings)
    assert translator is not None and translator.base_url == ENDPOINT
    assert translator.model == "m"  # its key reaching the endpoint: the SDK dubbing test

    # A public address literal passes without any lookup.
    public = "https://93.184.216.34/v1"
    await strict.put(workspace_id, base_url=public, model="m", api_key=KEY)
    found = await strict.translator(workspace_id, settings)
    assert found is not None and found.base_url == public

    # The sealed key is bound to its workspace: copied into another's row, it does not open.
    other, _ = await ApiKeyRepository(pool).create(workspace=unique_name("tr-copy"), role="owner")
    sealed = (await repo.get(workspace_id)).api_key_sealed  # type: ignore[union-attr]
    await repo.put(other.workspace_id, base_url=public, model="m", api_key_sealed=sealed)
    with pytest.raises(ValidationFailed) as unreadable:
        await strict.translator(other.workspace_id, settings)
    assert "api_key" in unreadable.value.message
