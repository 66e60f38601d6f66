"""Content moderation through an OpenAI-compatible endpoint, the review queue, and agents.

A server of its own with ``VOICESTREAM_MODERATION_URL`` pointed at the local fake (through the
official ``openai`` client): a flagged text is refused, a borderline one is held for review
until an admin approves (then the retry passes) or rejects it (then it stays refused), every
decision is audited, an endpoint outage fails closed unless the workspace's policy fails open,
and an agent whose model says a blocked word speaks a refusal instead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from fakes.openai_server import FakeOpenAI
from helpers import StartedServer, normalize, settings_for_test_server, start_test_server
from server.convai_client import ConvaiClient
from voicestream.engines.catalog import EngineRegistry
from voicestream.moderation.service import AGENT_REFUSAL
from voicestream.rest.resources import POOL
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository

QUEUE = "/v1/admin/moderation"
POLICY = f"{QUEUE}/policy"


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as started:
        started.flag("grenade", "violence", 0.95)
        started.flag("spicy", "harassment", 0.6)
        yield started


@pytest.fixture(scope="module")
async def moderated(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeOpenAI,
) -> AsyncIterator[StartedServer]:
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("moderation"),
        moderation_url=fake.base_url,
        moderation_key="sk-moderation",
        # The agents' model is the same local fake.
        webhook_allow_private=True,
        # Its tests submit no jobs; its worker must not take other servers' (their files).
        jobs_worker=False,
    )
    async with start_test_server(settings, registry) as started:
        yield started


async def _key(server: StartedServer) -> str:
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=f"reviewed-{uuid.uuid4().hex[:8]}", role="owner"
    )
    return key


async def _call(
    http: aiohttp.ClientSession,
    server: StartedServer,
    key: str,
    method: str,
    path: str,
    body: Any = None,
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    url = f"{server.url}{path}"
    async with http.request(method, url, json=body, headers=server.headers(key)) as r:
        payload = await r.json() if r.content_type == "application/json" else await r.read()
        return r.status, payload, r.headers


async def _tts(
    http: aiohttp.ClientSession, server: StartedServer, key: str, text: str
) -> tuple[int, Any]:
    body = {"text": text, "voice": "slt", "format": "pcm_16000"}
    status, payload, _ = await _call(http, server, key, "POST", "/v1/tts", body)
    return status, payload


async def test_a_text_the_endpoint_flags_is_refused_with_its_category(
    moderated: StartedServer, http: aiohttp.ClientSession, fake: FakeOpenAI
) -> None:
    key = await _key(moderated)
    status, refused = await _tts(http, moderated, key, "Now throw the grenade.")
    assert status == 400, refused
    assert refused["error"]["code"] == "content_blocked"
    assert refused["error"]["details"] == {
        "category": "violence",
        "matched_by": "moderation_endpoint",
    }
    assert "grenade" not in str(refused)
    asked = fake.moderation_requests[-1]
    assert "grenade" in asked["input"] and asked["model"] == "omni-moderation-latest"

    status, audio = await _tts(http, moderated, key, "Now throw the ball.")
    assert status == 200 and len(audio) > 1000


async def test_a_borderline_text_waits_for_review_and_passes_once_approved(
    moderated: StartedServer, http: aiohttp.ClientSession
) -> None:
    key = await _key(moderated)
    text = "That was a spicy remark."
    status, held = await _tts(http, moderated, key, text)
    assert status == 400 and held["error"]["code"] == "content_under_review", held
    item_id = held["error"]["details"]["item_id"]
    # Asked again while pending: the same item, not a second one.
    status, again = await _tts(http, moderated, key, text)
    assert status == 400 and again["error"]["details"]["item_id"] == item_id

    status, page, _ = await _call(http, moderated, key, "GET", f"{QUEUE}?status=pending")
    assert status == 200, page
    assert [(i["id"], i["text"], i["category"], i["source"]) for i in page["data"]] == [
        (item_id, text, "harassment", "tts")
    ]
    assert page["next_cursor"] is None

    path = f"{QUEUE}/{item_id}/approve"
    status, item, _ = await _call(http, moderated, key, "POST", path)
    assert status == 200 and item["status"] == "approved" and item["decided_by"], item

    status, audio = await _tts(http, moderated, key, text)
    assert status == 200 and len(audio) > 1000

    status, log, _ = await _call(
        http, moderated, key, "GET", "/v1/audit-logs?action=moderation.item_approved"
    )
    assert status == 200, log
    assert [(e["target"]["type"], e["target"]["id"]) for e in log["data"]] == [
        ("moderation_item", item_id)
    ], log


async def test_a_rejected_text_stays_refused_and_the_queue_pages(
    moderated: StartedServer, http: aiohttp.ClientSession
) -> None:
    key = await _key(moderated)
    policy = {"review_terms": ["maybe word", "dubious"]}
    status, stored, _ = await _call(http, moderated, key, "PUT", POLICY, policy)
    assert status == 200 and stored["review_terms"] == ["maybe word", "dubious"], stored

    status, first = await _tts(http, moderated, key, "A MAYBE   Word here.")
    assert first["error"]["code"] == "content_under_review", first
    status, second = await _tts(http, moderated, key, "Something dubious.")
    assert second["error"]["code"] == "content_under_review", second
    first_id = first["error"]["details"]["item_id"]

    status, page, _ = await _call(http, moderated, key, "GET", f"{QUEUE}?limit=1")
    assert status == 200 and len(page["data"]) == 1 and page["next_cursor"], page
    cursor = page["next_cursor"]
    status, rest, _ = await _call(http, moderated, key, "GET", f"{QUEUE}?limit=1&cursor={cursor}")
    assert [i["id"] for i in page["data"] + rest["data"]] == [
        second["error"]["details"]["item_id"],
        first_id,
    ]
    assert rest["next_cursor"] is None

    status, item, _ = await _call(http, moderated, key, "POST", f"{QUEUE}/{first_id}/reject")
    assert status == 200 and item["status"] == "rejected", item
    status, refused = await _tts(http, moderated, key, "A maybe word here.")
    assert status == 400 and refused["error"]["code"] == "content_blocked", refused
    status, conflict, _ = await _call(http, moderated, key, "POST", f"{QUEUE}/{first_id}/approve")
    assert status == 409 and conflict["error"]["code"] == "conflict", conflict

    status, rejected, _ = await _call(http, moderated, key, "GET", f"{QUEUE}?status=rejected")
    assert [i["id"] for i in rejected["data"]] == [first_id]
    status, log, _ = await _call(http, moderated, key, "GET", "/v1/audit-logs?action=moderation.")
    assert {e["action"] for e in log["data"]} == {
        "moderation.policy_changed",
        "moderation.item_rejected",
    }, log

    # Another workspace sees none of it.
    other = await _key(moderated)
    status, none, _ = await _call(http, moderated, other, "GET", QUEUE)
    assert status == 200 and none["data"] == []
    status, missing, _ = await _call(http, moderated, other, "POST", f"{QUEUE}/{first_id}/approve")
    assert status == 404, missing


async def test_an_endpoint_outage_fails_closed_unless_the_policy_fails_open(
    moderated: StartedServer, http: aiohttp.ClientSession, fake: FakeOpenAI
) -> None:
    key = await _key(moderated)
    fake.moderation_failures = 1
    status, refused = await _tts(http, moderated, key, "Good morning.")
    assert status == 503 and refused["error"]["code"] == "dependency_unavailable", refused

    policy = {"fail_open": True}
    status, stored, _ = await _call(http, moderated, key, "PUT", POLICY, policy)
    assert status == 200 and stored["fail_open"] is True
    fake.moderation_failures = 1
    status, audio = await _tts(http, moderated, key, "Good morning.")
    assert status == 200 and len(audio) > 1000
    assert fake.moderation_failures == 0, "the endpoint was asked and failed"


async def test_an_agent_reply_that_is_blocked_is_replaced_by_a_spoken_refusal(
    moderated: StartedServer, http: aiohttp.ClientSession, fake: FakeOpenAI
) -> None:
    key = await _key(moderated)
    policy = {"block_terms": ["zorp"]}
    status, _, _ = await _call(http, moderated, key, "PUT", POLICY, policy)
    assert status == 200
    llm = {"base_url": fake.base_url, "model": "fake-model", "api_key": "sk-test"}
    agent_body = {"name": "desk", "instructions": "Answer.", "voice": "slt", "llm": llm}
    status, agent, _ = await _call(http, moderated, key, "POST", "/v1/agents", agent_body)
    assert status == 201, agent
    fake.reply_text("The secret word is Zorp, as you asked.")

    ws = await http.ws_connect(
        f"{moderated.ws_url}/v1/convai/stream",
        params={"agent_id": agent["id"]},
        headers=moderated.headers(key),
    )
    client = ConvaiClient(ws)
    try:
        await client.wait_event("session")
        await ws.send_json({"type": "text", "text": "Tell me the secret word."})
        reply = await client.wait_event("agent_response")
        assert reply["text"] == AGENT_REFUSAL
        await client.wait_for(lambda: len(client.audio) > 0)
        audio = await client.audio_quiet_for(0.6)
    finally:
        await client.close()
    async with http.post(
        f"{moderated.url}/v1/stt",
        data=audio,
        params={"format": "pcm_16000"},
        headers=moderated.headers(key),
    ) as r:
        heard = normalize((await r.json())["text"])
    assert "zorp" not in heard and "secret" not in heard, heard
    assert "sorry" in heard, heard
    assert not client.of_type("error"), client.events
