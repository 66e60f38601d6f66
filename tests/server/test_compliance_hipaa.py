"""The HIPAA mode (``PUT /v1/admin/compliance``), each stricter default seen through the API:
members without a second factor are refused (403 ``mfa_required``), access tokens older than
the workspace's lifetime are refused, personal-data reads leave ``data.read`` audit entries,
TTS history is not kept unless configured; and the IP allow-list (403 ``ip_not_allowed``),
which trusts the socket's address, not ``X-Forwarded-For``."""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp
import pyotp

from server.auth_calls import auth_call
from server.workspace_contents import fill_workspace
from server.workspace_people import team
from voicestream.rest.auth import ACCOUNTS
from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository

HIPAA = {"hipaa": True, "access_token_minutes": 5}


async def _key(server: Any, workspace_id: str, role: str = "admin") -> dict[str, str]:
    _, secret = await ApiKeyRepository(server.app[POOL]).create(
        workspace_id=uuid.UUID(workspace_id), role=role
    )
    return {"Authorization": f"Bearer {secret}"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _answer(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], **kw: Any
) -> tuple[int, Any]:
    async with http.request(method, url, headers=headers, **kw) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


async def _set(http: aiohttp.ClientSession, server: Any, body: Any, headers: dict[str, str]) -> Any:
    status, answer = await _answer(
        http, "PUT", f"{server.url}/v1/admin/compliance", headers, json=body
    )
    assert status == 200, answer
    return answer


async def _reads(server: Any, workspace_id: str) -> list[tuple[str, str]]:
    rows = await server.app[POOL].fetch(
        "SELECT target_type, target_id FROM audit_log "
        "WHERE workspace_id = $1 AND action = 'data.read' ORDER BY id",
        uuid.UUID(workspace_id),
    )
    return [(row["target_type"], row["target_id"]) for row in rows]


async def test_hipaa_requires_a_second_factor_and_fresh_tokens(server, http) -> None:
    _, workspace_id, people = await team(server)
    admin = await _key(server, workspace_id)
    viewer = people["viewer"]
    agents = f"{server.url}/v1/agents"
    stale = server.app[ACCOUNTS].access.issue(viewer.user.id, now=time.time() - 600)
    # Before: no second factor needed, and a ten-minute-old token is fine.
    assert (await _answer(http, "GET", agents, _bearer(viewer.token)))[0] == 200
    assert (await _answer(http, "GET", agents, _bearer(stale)))[0] == 200
    status, shown = await _answer(http, "GET", f"{server.url}/v1/admin/compliance", admin)
    assert status == 200 and shown["hipaa"] is False and shown["mfa_required"] is False

    shown = await _set(http, server, HIPAA, admin)
    assert shown["hipaa"] and shown["mfa_required"] and shown["personal_data_reads_audited"]
    assert shown["tts_history_kept"] is False and shown["conversation_audio_kept"] is False

    status, body = await _answer(http, "GET", agents, _bearer(viewer.token))
    assert status == 403 and body["error"]["code"] == "mfa_required", body
    # Their own routes stay open: that is where the second factor is set up.
    status, started = await auth_call(http, server, "POST", "mfa/totp", token=viewer.token)
    assert status == 201, started
    totp = pyotp.parse_uri(started["otpauth_uri"])
    status, _ = await auth_call(
        http, server, "POST", "mfa/totp/confirm", {"code": totp.now()}, token=viewer.token
    )
    assert status == 200
    assert (await _answer(http, "GET", agents, _bearer(viewer.token)))[0] == 200
    # A token older than the workspace's 5 minutes (yet within the server's 15) is refused.
    status, body = await _answer(http, "GET", agents, _bearer(stale))
    assert status == 401 and body["error"]["details"]["max_token_age_minutes"] == 5, body
    # Keys hold no person: the rules for members do not apply to them.
    assert (await _answer(http, "GET", agents, admin))[0] == 200

    await _set(http, server, {"hipaa": False}, admin)
    assert (await _answer(http, "GET", agents, _bearer(stale)))[0] == 200


async def test_hipaa_audits_personal_data_reads_and_keeps_no_tts_history(server, http) -> None:
    _, workspace_id, _ = await team(server)
    contents = await fill_workspace(server, workspace_id, "hipaa")
    admin = await _key(server, workspace_id)
    editor = await _key(server, workspace_id, "editor")
    base = server.url
    reads = {
        (
            "history_item",
            contents.history_item_id,
        ): f"/elevenlabs/v1/history/{contents.history_item_id}",
        ("file", contents.upload_id): f"/v1/files/{contents.upload_id}",
        (
            "conversation",
            contents.conversation_id,
        ): f"/v1/convai/sessions/{contents.conversation_id}",
    }
    speak = f"{base}/elevenlabs/v1/text-to-speech/slt"

    async def synthesize() -> str | None:
        async with http.post(speak, json={"text": "Hello."}, headers=editor) as response:
            assert response.status == 200, await response.text()
            await response.read()
            return response.headers.get("history-item-id")

    for path in reads.values():
        assert (await _answer(http, "GET", base + path, editor))[0] == 200
    assert await _reads(server, workspace_id) == []  # not audited without the mode
    assert await synthesize() is not None  # and history is kept

    await _set(http, server, HIPAA, admin)
    for path in reads.values():
        assert (await _answer(http, "GET", base + path, editor))[0] == 200
    assert (await _answer(http, "GET", f"{base}/v1/voices", editor))[0] == 200  # no one's data
    missing = f"/v1/files/{uuid.uuid4()}"
    assert (await _answer(http, "GET", base + missing, editor))[0] == 404  # nothing was read
    assert await _reads(server, workspace_id) == list(reads)

    history = f"{base}/elevenlabs/v1/history"
    _, before = await _answer(http, "GET", history, editor)
    assert await synthesize() is None
    _, after = await _answer(http, "GET", history, editor)
    assert len(after["history"]) == len(before["history"])
    # Unless the workspace says to keep it.
    await _set(http, server, {**HIPAA, "keep_tts_history": True}, admin)
    assert await synthesize() is not None


async def test_the_ip_allow_list_trusts_the_socket_not_the_header(server, http) -> None:
    _, workspace_id, _ = await team(server)
    admin = await _key(server, workspace_id)
    url = f"{server.url}/v1/admin/compliance"
    # A list that leaves out the caller would lock everyone out: refused.
    status, body = await _answer(
        http, "PUT", url, admin, json={"hipaa": False, "ip_allow_list": ["203.0.113.0/24"]}
    )
    assert status == 422 and "your own address" in body["error"]["message"], body
    for bad in (["not-a-network"], ["10.0.0.0/33"], "127.0.0.1", [1]):
        status, body = await _answer(
            http, "PUT", url, admin, json={"hipaa": False, "ip_allow_list": bad}
        )
        assert status == 422, (bad, body)
    for bad in ({"hipaa": "yes"}, {"hipaa": True, "access_token_minutes": 0}, {"x": 1}, {}):
        assert (await _answer(http, "PUT", url, admin, json=bad))[0] == 422, bad

    shown = await _set(http, server, {"hipaa": False, "ip_allow_list": ["127.0.0.1"]}, admin)
    assert shown["ip_allow_list"] == ["127.0.0.1/32"]
    agents = f"{server.url}/v1/agents"
    assert (await _answer(http, "GET", agents, admin))[0] == 200
    # The same loopback interface from another address, claiming the listed one in a header.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as elsewhere:
        spoofed = {**admin, "X-Forwarded-For": "127.0.0.1"}
        status, body = await _answer(elsewhere, "GET", agents, spoofed)
        assert status == 403 and body["error"]["code"] == "ip_not_allowed", body
        await _set(http, server, {"hipaa": False, "ip_allow_list": []}, admin)
        assert (await _answer(elsewhere, "GET", agents, admin))[0] == 200
