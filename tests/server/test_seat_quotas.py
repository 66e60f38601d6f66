"""Per-seat quotas and usage per seat (issue 9 §2 and §5).

An owner gives a member quotas of their own (``PATCH /v1/workspaces/{id}/members/{user_id}``);
the member is then refused at their own quota, with 402 ``quota_exceeded`` naming the seat,
while the workspace still has room; an API key the member made counts against the same
seat; concurrent requests of one seat never overshoot it together. ``GET /v1/usage`` groups
by seat, and a signed-in editor or viewer sees only their own.

The session server serves: seat quotas live in the database, no setting is needed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import aiohttp

from helpers import StartedServer
from server.workspace_people import Person, call, house_error, team
from voicestream.rest.resources import POOL, USAGE
from voicestream.store.keys import ApiKeyRepository

TEXT = "Hello."  # 6 characters: three fit in a quota of 20, a fourth does not
QUOTA = 20


async def _tts(http: aiohttp.ClientSession, server: StartedServer, token: str) -> tuple[int, Any]:
    body = {"text": TEXT, "voice": "slt", "format": "pcm_16000"}
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(f"{server.url}/v1/tts", json=body, headers=headers) as r:
        if r.status == 200:
            return 200, await r.read()
        return r.status, await r.json()


async def _set_quotas(
    http: aiohttp.ClientSession,
    server: StartedServer,
    by: Person,
    workspace_id: str,
    member: Person,
    quotas: dict[str, Any],
) -> tuple[int, Any]:
    return await call(
        http,
        server,
        "PATCH",
        f"/v1/workspaces/{workspace_id}/members/{member.id}",
        {"quotas": quotas},
        token=by.token,
    )


def _seat_refusal(body: Any, member: Person) -> None:
    house_error(body, "quota_exceeded")
    details = body["error"]["details"]
    assert details["scope"] == "seat" and details["user_id"] == member.id, details
    assert details["limit"] == QUOTA, details
    assert member.id in body["error"]["message"], body


async def test_concurrent_requests_of_one_seat_never_overshoot_its_quota(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, workspace_id, people = await team(server)
    owner, editor = people["owner"], people["editor"]
    status, seat = await _set_quotas(
        http, server, owner, workspace_id, editor, {"tts_characters": QUOTA}
    )
    assert status == 200, seat
    assert seat["user_id"] == editor.id and seat["role"] == "editor", seat
    assert seat["quotas"] == {
        "tts_characters": QUOTA,
        "stt_seconds": None,
        "conversation_seconds": None,
    }

    results = await asyncio.gather(*(_tts(http, server, editor.token) for _ in range(6)))
    assert sorted(status for status, _ in results) == [200, 200, 200, 402, 402, 402], results
    for status, body in results:
        if status == 402:
            _seat_refusal(body, editor)

    # The workspace has room: its other members (and the owner) are served.
    assert (await _tts(http, server, people["admin"].token))[0] == 200
    assert (await _tts(http, server, owner.token))[0] == 200

    # A key the member made is the member's seat too: no stepping around the quota.
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace_id=UUID(workspace_id), role="editor", created_by_user_id=editor.user.id
    )
    status, body = await _tts(http, server, key)
    assert status == 402
    _seat_refusal(body, editor)

    # What still fits is served; then streams are refused before the upgrade.
    body = {"text": "Hi", "voice": "slt", "format": "pcm_16000"}
    async with http.post(
        f"{server.url}/v1/tts", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as r:
        assert r.status == 200
    headers = {"Authorization": f"Bearer {editor.token}"}
    try:
        await http.ws_connect(f"{server.ws_url}/v1/tts/stream", headers=headers)
    except aiohttp.WSServerHandshakeError as refused:
        assert refused.status == 402
    else:  # pragma: no cover - the assertion's message
        raise AssertionError("the TTS socket opened past the seat's quota")

    # Cleared: the member is back to the workspace's quota alone.
    status, seat = await _set_quotas(
        http, server, owner, workspace_id, editor, {"tts_characters": None}
    )
    assert status == 200 and seat["quotas"]["tts_characters"] is None, seat
    assert (await _tts(http, server, editor.token))[0] == 200


async def test_a_socket_whose_key_comes_inside_refuses_in_its_own_protocol(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, workspace_id, people = await team(server)
    owner, editor = people["owner"], people["editor"]
    status, _ = await _set_quotas(http, server, owner, workspace_id, editor, {"tts_characters": 0})
    assert status == 200
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace_id=UUID(workspace_id), role="editor", created_by_user_id=editor.user.id
    )
    url = f"{server.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input?output_format=pcm_16000"
    async with http.ws_connect(url) as ws:
        await ws.send_json({"text": " ", "xi_api_key": key})
        texts = [m.data async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
        assert ws.close_code == 4402, (ws.close_code, texts)
    assert [json.loads(t).get("error") for t in texts] == ["quota_exceeded"], texts


async def test_who_may_set_a_seats_quotas(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, workspace_id, people = await team(server)
    owner, admin, editor, viewer = (people[r] for r in ("owner", "admin", "editor", "viewer"))
    quotas = {"stt_seconds": 30.5, "conversation_seconds": 600}

    status, seat = await _set_quotas(http, server, admin, workspace_id, viewer, quotas)
    assert status == 200, seat
    assert seat["quotas"] == {
        "tts_characters": None,
        "stt_seconds": 30.5,
        "conversation_seconds": 600,
    }
    # An absent kind stays as it was; a role and quotas may change together.
    status, seat = await call(
        http,
        server,
        "PATCH",
        f"/v1/workspaces/{workspace_id}/members/{viewer.id}",
        {"role": "editor", "quotas": {"tts_characters": 5}},
        token=admin.token,
    )
    assert status == 200, seat
    assert seat["role"] == "editor"
    assert seat["quotas"] == {"tts_characters": 5, "stt_seconds": 30.5, "conversation_seconds": 600}

    # Only an owner changes an owner; editors change no one; a stranger is not found.
    status, body = await _set_quotas(http, server, admin, workspace_id, owner, quotas)
    assert status == 403, body
    house_error(body, "forbidden")
    status, body = await _set_quotas(http, server, editor, workspace_id, viewer, quotas)
    assert status == 403, body
    _, _, others = await team(server)
    status, body = await _set_quotas(http, server, owner, workspace_id, others["editor"], quotas)
    assert status == 404, body
    house_error(body, "not_found")
    status, seat = await _set_quotas(http, server, owner, workspace_id, owner, {"stt_seconds": 1})
    assert status == 200 and seat["quotas"]["stt_seconds"] == 1, seat


async def test_bad_seat_quotas_are_422(server: StartedServer, http: aiohttp.ClientSession) -> None:
    _, workspace_id, people = await team(server)
    owner, editor = people["owner"], people["editor"]
    path = f"/v1/workspaces/{workspace_id}/members/{editor.id}"
    for body in (
        {},
        {"quotas": {"tts_characters": -1}},
        {"quotas": {"stt_seconds": "lots"}},
        {"quotas": {"minutes": 5}},
        {"quotas": {"tts_characters": 1.5}},
        {"role": "editor", "quota": {}},
    ):
        status, answer = await call(http, server, "PATCH", path, body, token=owner.token)
        assert status == 422, (body, answer)
        house_error(answer, "invalid_request")


async def test_usage_by_seat_and_who_sees_which(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, workspace_id, people = await team(server)
    owner, admin, editor, viewer = (people[r] for r in ("owner", "admin", "editor", "viewer"))
    ws = UUID(workspace_id)
    usage = server.app[USAGE]
    await usage.record((ws, None, editor.user.id), "tts_characters", 40)
    await usage.record((ws, None, viewer.user.id), "stt_seconds", 3.5)
    await usage.record((ws, None, viewer.user.id), "tts_characters", 2)
    await usage.record(ws, "conversation_seconds", 60)  # of no seat (a widget's ticket)
    # A key's usage is its maker's.
    made, _ = await ApiKeyRepository(server.app[POOL]).create(
        workspace_id=ws, role="editor", created_by_user_id=editor.user.id
    )
    await usage.record((ws, made.id), "tts_characters", 2)
    await _set_quotas(http, server, owner, workspace_id, editor, {"tts_characters": 1000})

    seats = [None, *sorted((editor.id, viewer.id))]
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "group_by=user&limit=1" + (f"&cursor={cursor}" if cursor else "")
        status, page = await call(http, server, "GET", f"/v1/usage?{query}", token=admin.token)
        assert status == 200, page
        assert page["group_by"] == "user" and page["user_id"] is None, page
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    groups = [g for page in pages for g in page["data"]]
    assert [g["user_id"] for g in groups] == seats, groups
    by_seat = {g["user_id"]: g for g in groups}
    assert by_seat[editor.id]["tts_characters"] == 42
    assert by_seat[viewer.id]["stt_seconds"] == 3.5 and by_seat[viewer.id]["tts_characters"] == 2
    assert by_seat[None]["conversation_seconds"] == 60

    # An admin narrows to one seat, and sees its own quotas.
    status, page = await call(
        http, server, "GET", f"/v1/usage?group_by=key&user_id={editor.id}", token=owner.token
    )
    assert status == 200, page
    assert {g["key_id"]: g["tts_characters"] for g in page["data"]} == {None: 40, str(made.id): 2}
    assert {"kind": "tts_characters", "limit": 1000} in page["seat_quotas"], page

    # An editor or viewer sees their own seat only, however they ask.
    status, page = await call(http, server, "GET", "/v1/usage?group_by=user", token=viewer.token)
    assert status == 200, page
    assert page["user_id"] == viewer.id
    assert [g["user_id"] for g in page["data"]] == [viewer.id], page
    status, page = await call(http, server, "GET", "/v1/usage", token=editor.token)
    assert status == 200, page
    assert sum(g["tts_characters"] for g in page["data"]) == 42, page
    assert sum(g["conversation_seconds"] for g in page["data"]) == 0, page
    status, body = await call(
        http, server, "GET", f"/v1/usage?user_id={viewer.id}", token=editor.token
    )
    assert status == 403, body
    house_error(body, "forbidden")

    # A seat of another workspace is not found; a malformed one is a bad parameter.
    _, _, others = await team(server)
    status, body = await call(
        http, server, "GET", f"/v1/usage?user_id={others['owner'].id}", token=owner.token
    )
    assert status == 404, body
    status, body = await call(http, server, "GET", "/v1/usage?user_id=nobody", token=owner.token)
    assert status == 422, body


async def test_the_member_list_shows_each_seats_own_quotas(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, workspace_id, people = await team(server)
    owner, editor, viewer = people["owner"], people["editor"], people["viewer"]
    status, _ = await _set_quotas(
        http, server, owner, workspace_id, editor, {"tts_characters": 40, "stt_seconds": 2.5}
    )
    assert status == 200

    # Any member reads the list; null is "none of their own" (the server's default applies).
    status, body = await call(
        http, server, "GET", f"/v1/workspaces/{workspace_id}/members", token=viewer.token
    )
    assert status == 200, body
    seats = {member["user_id"]: member["quotas"] for member in body["members"]}
    assert seats[editor.id] == {
        "tts_characters": 40,
        "stt_seconds": 2.5,
        "conversation_seconds": None,
    }
    none_set = {"tts_characters": None, "stt_seconds": None, "conversation_seconds": None}
    assert seats[owner.id] == seats[viewer.id] == none_set
    assert len(seats) == 4
