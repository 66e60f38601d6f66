"""``GET /v1/credits`` and credits over HTTP and sockets (issue 10 §6).

On the session server credits are not enforced (the default): usage is still posted, any
shortfall granted free, and the listing shows balances, open reservations and the ledger of
the caller's workspace alone, a page at a time. A server of its own enforces them with a
small opening grant: a TTS request its credits cannot cover is 402 ``insufficient_credits``
before any synthesis, sockets are refused once nothing is left (HTTP 402 before the upgrade,
ElevenLabs' error event and close 4402 when the key comes inside), and ``voicestream credits
grant`` lets work through again.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from clients import tts_ws
from waiting import eventually

from fixtures_services import cli_env, run_cli, unique_name
from helpers import StartedServer, settings_for_test_server, start_test_server
from voicestream.billing import ledger
from voicestream.billing.ledger import CreditPolicy
from voicestream.engines.catalog import EngineRegistry
from voicestream.rest.resources import POOL
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository

OPENING_GRANT = 10
TEXT = "Hello."  # 6 characters: 6 credits


@pytest.fixture(scope="module")
async def enforced(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[StartedServer]:
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("credits"),
        credits_enforced=True,
        credits_opening_grant=OPENING_GRANT,
    )
    async with start_test_server(settings, registry) as started:
        yield started


async def _key(
    server: StartedServer, workspace: str | None = None, role: str = "owner"
) -> tuple[UUID, str]:
    repo = ApiKeyRepository(server.app[POOL])
    api_key, key = await repo.create(workspace=workspace or unique_name("credits"), role=role)
    return api_key.workspace_id, key


async def _credits(
    http: aiohttp.ClientSession, server: StartedServer, key: str, **query: Any
) -> tuple[int, Any]:
    async with http.get(f"{server.url}/v1/credits", params=query, headers=server.headers(key)) as r:
        return r.status, await r.json()


async def _tts(
    http: aiohttp.ClientSession, server: StartedServer, key: str, text: str
) -> tuple[int, Any]:
    body = {"text": text, "voice": "slt", "format": "pcm_16000"}
    async with http.post(f"{server.url}/v1/tts", json=body, headers=server.headers(key)) as r:
        return r.status, (await r.read() if r.status == 200 else await r.json())


def _entries(transaction: dict[str, Any]) -> dict[str, int]:
    entries = {e["account"]: e["amount"] for e in transaction["entries"]}
    assert sum(entries.values()) == 0, transaction
    return entries


async def test_credits_show_balances_reservations_and_the_ledger(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    workspace_id, key = await _key(server)
    _, viewer = await _key(server, await _workspace_name(server, workspace_id), role="viewer")
    assert (await _tts(http, server, key, TEXT))[0] == 200
    pool = server.app[POOL]
    await ledger.grant(pool, workspace_id, 100, note="welcome")
    job_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():  # as a job's submission does
        await ledger.reserve(conn, workspace_id, job_id, 30, policy=CreditPolicy())

    status, body = await _credits(http, server, viewer)

    assert status == 200, body
    assert body["workspace_id"] == str(workspace_id)
    assert body["enforced"] is False
    # Not enforced: the TTS request's 6 credits were granted free, then spent.
    assert (body["balance"], body["reserved"], body["spent"], body["granted"]) == (70, 30, 6, 106)
    assert [(r["job_id"], r["credits"]) for r in body["reservations"]] == [(str(job_id), 30)]
    assert body["next_cursor"] is None
    reserve, grant, usage, free = body["transactions"]
    assert reserve["type"] == "reserve" and reserve["job_id"] == str(job_id)
    assert _entries(reserve) == {"available": -30, "reserved": 30}
    assert grant["type"] == "grant" and grant["details"] == {"source": "grant", "note": "welcome"}
    assert _entries(grant) == {"grants": -100, "available": 100}
    assert usage["type"] == "usage" and usage["ref"].startswith("usage:")
    assert usage["details"] == {"kind": "tts_characters", "quantity": 6.0, "credits": 6}
    assert _entries(usage) == {"available": -6, "spent": 6}
    assert free["type"] == "grant" and free["details"] == {"source": "free"}
    assert _entries(free) == {"grants": -6, "available": 6}
    assert reserve["id"] > grant["id"] > usage["id"] > free["id"]


async def _workspace_name(server: StartedServer, workspace_id: UUID) -> str:
    name: str = await server.app[POOL].fetchval(
        "SELECT name FROM workspaces WHERE id = $1", workspace_id
    )
    return name


async def test_streamed_usage_is_posted_when_the_stream_ends(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, key = await _key(server)
    result = await tts_ws(http, server.url, server.headers(key), ["Hi there."])
    assert result.audio

    async def posted() -> list[dict[str, Any]]:
        _, body = await _credits(http, server, key)
        return [t for t in body["transactions"] if t["type"] == "usage"]

    usage = await eventually(posted, what="the stream's usage in the ledger")
    assert usage[0]["details"]["kind"] == "tts_characters"
    assert _entries(usage[0]) == {"available": -9, "spent": 9}


async def test_the_ledger_pages_and_is_the_workspaces_own(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    workspace_id, key = await _key(server)
    other_id, other_key = await _key(server)
    pool = server.app[POOL]
    for n in range(1, 6):
        await ledger.grant(pool, workspace_id, n)
    await ledger.grant(pool, other_id, 1000)

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    for expected in (2, 2, 1):
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        status, page = await _credits(http, server, key, **query)
        assert status == 200, page
        assert len(page["transactions"]) == expected, page
        seen += page["transactions"]
        cursor = page["next_cursor"]
    assert cursor is None
    assert [_entries(t)["available"] for t in seen] == [5, 4, 3, 2, 1]
    assert page["balance"] == 15

    status, theirs = await _credits(http, server, other_key)
    assert status == 200 and theirs["balance"] == 1000, theirs
    assert [_entries(t) for t in theirs["transactions"]] == [{"grants": -1000, "available": 1000}]
    assert {t["id"] for t in theirs["transactions"]}.isdisjoint(t["id"] for t in seen)


@pytest.mark.parametrize(
    "query",
    [{"limit": "0"}, {"limit": "201"}, {"cursor": "not-ours!"}, {"cursor": "Zm9v"}, {"page": "2"}],
    ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()),
)
async def test_bad_credits_parameters_are_422(
    server: StartedServer, http: aiohttp.ClientSession, query: dict[str, str]
) -> None:
    status, body = await _credits(http, server, server.api_key, **query)
    assert status == 422, body
    assert body["error"]["code"] == "invalid_request", body


async def test_enforced_credits_refuse_what_they_cannot_cover(
    enforced: StartedServer, http: aiohttp.ClientSession, embedded_services: ServiceURLs
) -> None:
    workspace = unique_name("enforced")
    _, key = await _key(enforced, workspace)

    assert (await _tts(http, enforced, key, TEXT))[0] == 200  # 6 of the opening 10
    status, body = await _tts(http, enforced, key, TEXT)
    assert status == 402, body
    assert body["error"]["code"] == "insufficient_credits", body
    assert body["error"]["details"] == {"available": 4, "required": 6}
    status, credits = await _credits(http, enforced, key)
    assert status == 200 and credits["enforced"] is True, credits
    assert (credits["balance"], credits["spent"], credits["granted"]) == (4, 6, OPENING_GRANT)

    assert (await _tts(http, enforced, key, "Hey."))[0] == 200  # the last 4
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{enforced.ws_url}/v1/tts/stream", headers=enforced.headers(key))
    assert refused.value.status == 402
    el_url = (
        f"{enforced.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input?output_format=pcm_16000"
    )
    async with http.ws_connect(el_url) as ws:
        await ws.send_json({"text": " ", "xi_api_key": key})
        texts = [m.data async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
        assert ws.close_code == 4402, (ws.close_code, texts)
    assert [json.loads(t).get("error") for t in texts] == ["insufficient_credits"], texts

    granted = await run_cli(
        "credits", "grant", "--workspace", workspace, "50", "--note", "top-up",
        env=cli_env(DATABASE_URL=embedded_services.database_url),
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert "granted 50 credits" in granted.stdout and "50 available" in granted.stdout
    assert (await _tts(http, enforced, key, TEXT))[0] == 200
    status, credits = await _credits(http, enforced, key)
    assert (credits["balance"], credits["spent"]) == (44, 16), credits
    assert credits["transactions"][1]["details"] == {"source": "grant", "note": "top-up"}


# Each TTS route of the drop-in protocols, with a body of ``text`` and how its refusal reads.
_COMPAT_TTS: dict[str, tuple[str, Callable[[str], dict[str, Any]], Callable[[Any], str]]] = {
    "openai-speech": (
        "/openai/v1/audio/speech",
        lambda text: {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "wav"},
        lambda body: f"{body['error']['type']}/{body['error']['code']}",
    ),
    "elevenlabs-convert": (
        "/elevenlabs/v1/text-to-speech/slt?output_format=pcm_16000",
        lambda text: {"text": text},
        lambda body: str(body["detail"]["status"]),
    ),
    "elevenlabs-stream": (
        "/elevenlabs/v1/text-to-speech/slt/stream?output_format=pcm_16000",
        lambda text: {"text": text},
        lambda body: str(body["detail"]["status"]),
    ),
    "elevenlabs-timestamps": (
        "/elevenlabs/v1/text-to-speech/slt/with-timestamps?output_format=pcm_16000",
        lambda text: {"text": text},
        lambda body: str(body["detail"]["status"]),
    ),
    "elevenlabs-dialogue": (
        "/elevenlabs/v1/text-to-dialogue?output_format=pcm_16000",
        lambda text: {
            "inputs": [{"text": text[:4], "voice_id": "slt"}, {"text": text[4:], "voice_id": "awb"}]
        },
        lambda body: str(body["detail"]["status"]),
    ),
}
_REFUSALS = {"openai-speech": "insufficient_quota/insufficient_credits"}


@pytest.mark.parametrize("route", sorted(_COMPAT_TTS))
async def test_compatible_tts_routes_charge_before_synthesis(
    enforced: StartedServer, http: aiohttp.ClientSession, route: str
) -> None:
    """OpenAI's and ElevenLabs' TTS routes charge the text's characters up front as /v1/tts
    does: more than the balance is refused in the protocol's own error shape before any audio,
    with nothing spent; what fits is served and spent once."""
    path, body_of, refusal_of = _COMPAT_TTS[route]
    _, key = await _key(enforced)
    url = f"{enforced.url}{path}"

    async with http.post(url, json=body_of("Hello there."), headers=enforced.headers(key)) as r:
        refused = await r.json()
        assert r.status == 402, refused
    assert refusal_of(refused) == _REFUSALS.get(route, "quota_exceeded"), refused
    _, credits = await _credits(http, enforced, key)
    assert (credits["balance"], credits["spent"]) == (OPENING_GRANT, 0), credits

    async with http.post(url, json=body_of("Hi, you."), headers=enforced.headers(key)) as r:
        audio = await r.read()
        assert r.status == 200, audio[:300]
    assert len(audio) > 1000
    _, credits = await _credits(http, enforced, key)
    assert (credits["balance"], credits["spent"]) == (OPENING_GRANT - 8, 8), credits


async def test_granting_to_no_workspace_or_no_credits_fails(
    embedded_services: ServiceURLs,
) -> None:
    env = cli_env(DATABASE_URL=embedded_services.database_url)
    missing, zero = await asyncio.gather(
        run_cli("credits", "grant", "--workspace", unique_name("nobody"), "5", env=env),
        run_cli("credits", "grant", "--workspace", "tests", "0", env=env),
    )
    assert missing.returncode == 1 and "no workspace named" in missing.stderr, missing
    assert zero.returncode == 2 and "must be from 1" in zero.stderr, zero


async def test_concurrent_job_submissions_never_overdraw(
    enforced: StartedServer, http: aiohttp.ClientSession
) -> None:
    """Twelve jobs of 3 credits race for the opening 10: exactly three are reserved, the rest
    are 402 before anything is stored, and the balance never goes below zero."""
    _, key = await _key(enforced)
    body = {"type": "tts", "input": {"text": "Hi!", "voice": "slt", "format": "wav_16000"}}

    async def submit() -> tuple[int, Any]:
        url = f"{enforced.url}/v1/jobs"
        async with http.post(url, json=body, headers=enforced.headers(key)) as r:
            return r.status, await r.json()

    answers = await asyncio.gather(*(submit() for _ in range(12)))
    accepted = [job for status, job in answers if status == 202]
    refused = [error for status, error in answers if status == 402]
    assert (len(accepted), len(refused)) == (3, 9), answers
    assert {e["error"]["code"] for e in refused} == {"insufficient_credits"}, refused

    async with http.get(f"{enforced.url}/v1/jobs", headers=enforced.headers(key)) as r:
        listed = (await r.json())["data"]
    assert sorted(j["id"] for j in listed) == sorted(j["id"] for j in accepted)

    async def settled() -> dict[str, Any] | None:
        status, credits = await _credits(http, enforced, key)
        assert status == 200, credits
        return credits if not credits["reservations"] else None

    credits = await eventually(settled, within=60, what="every job settled")
    assert credits["balance"] >= 0 and credits["balance"] + credits["spent"] == OPENING_GRANT
    assert credits["spent"] == 9, credits  # three jobs of "Hi!", each its 3 characters
