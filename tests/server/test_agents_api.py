"""``/v1/agents`` and ``/v1/convai/sessions`` against the real server: CRUD, documents (text,
markdown, PDF), roles, tenant isolation and bad input (always a 4xx JSON error, never a 500)."""

from __future__ import annotations

import io
import uuid
from typing import Any

import aiohttp
import pytest

from fakes.pdf import make_pdf
from fixtures_services import unique_name
from voicestream.engines.agents.base import AgentRequest
from voicestream.engines.agents.knowledge import DONT_KNOW, KnowledgeAgent
from voicestream.rest.resources import AGENT_RESOLVER, AGENTS, CONVERSATIONS, KNOWLEDGE, POOL
from voicestream.store.keys import ApiKeyRepository

# An id no test creates; fixed (not uuid4()) so every test worker collects the same ids.
NOBODY = "3d8d3f1c-0fbf-45c5-b87d-056a335f8070"

OPENING_HOURS = "Our office is open from nine in the morning to five in the evening on weekdays."
PARKING = "Parking is free in the garage behind the building for all visitors."


async def _key(server, role: str, workspace: str | None = None) -> dict[str, str]:
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=workspace or unique_name("agents-api"), role=role
    )
    return server.headers(key)


async def _call(
    s: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, dict[str, Any]]:
    async with s.request(method, url, **kw) as r:
        if r.status == 204:
            return 204, {}
        assert r.content_type == "application/json", await r.text()
        return r.status, await r.json()


async def _ask(server, agent_id: str, workspace_id: str, question: str) -> str:
    """What the knowledge agent answers now for this agent (the engine the sessions use)."""
    config = await server.app[AGENTS].get_config(workspace_id, agent_id)
    engine = server.app[AGENT_RESOLVER].engine_for(config)
    assert isinstance(engine, KnowledgeAgent)
    return "".join([d async for d in engine.respond(AgentRequest(config, question))])


async def test_agent_crud(server) -> None:
    headers = await _key(server, "editor")
    base = f"{server.url}/v1/agents"
    async with aiohttp.ClientSession(headers=headers) as s:
        status, agent = await _call(
            s,
            "POST",
            base,
            json={
                "name": "  front desk ",
                "instructions": "Answer visitor questions.",
                "voice": "slt",
                "first_message": "Hello, how can I help?",
                "knowledge": [OPENING_HOURS, PARKING],
            },
        )
        assert status == 201, agent
        assert agent["name"] == "front desk" and agent["voice"] == "slt"
        assert agent["language"] == "en" and agent["public"] is False and agent["llm"] is None
        assert [d["chunks"] for d in agent["documents"]] == [1, 1]
        uuid.UUID(agent["id"])
        url = f"{base}/{agent['id']}"

        assert await _ask(server, agent["id"], agent["workspace_id"], "Is parking free?") == PARKING

        status, listed = await _call(s, "GET", base)
        assert status == 200 and [a["id"] for a in listed["agents"]] == [agent["id"]]
        status, got = await _call(s, "GET", url)
        assert status == 200 and got["first_message"] == "Hello, how can I help?"
        assert len(got["documents"]) == 2

        status, patched = await _call(
            s,
            "PATCH",
            url,
            json={
                "name": "desk",
                "public": True,
                "first_message": None,
                "llm": {"base_url": "http://127.0.0.1:9/v1/", "model": "m", "api_key": "sk-x"},
            },
        )
        assert status == 200, patched
        assert (patched["name"], patched["public"], patched["first_message"]) == (
            "desk",
            True,
            None,
        )
        assert patched["llm"] == {
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "api_key_set": True,
            "api_key_hint": None,  # too short a key to show any of it
        }
        assert patched["instructions"] == "Answer visitor questions."  # unchanged
        public = await server.app[AGENTS].get_public_config(agent["id"])
        assert public.llm is not None and public.llm["api_key"] == "sk-x"

        assert (await _call(s, "DELETE", url))[0] == 204
        assert (await _call(s, "GET", url))[0] == 404
        assert (await _call(s, "DELETE", url))[0] == 404
        # Its vectors went with it.
        kb = server.app[KNOWLEDGE]
        assert await kb.search(agent["workspace_id"], agent["id"], "parking") == []


async def test_documents_text_markdown_and_pdf(server) -> None:
    headers = await _key(server, "admin")
    async with aiohttp.ClientSession(headers=headers) as s:
        status, agent = await _call(
            s, "POST", f"{server.url}/v1/agents", json={"name": "docs", "voice": "rms"}
        )
        assert status == 201, agent
        ws, aid = agent["workspace_id"], agent["id"]
        docs_url = f"{server.url}/v1/agents/{aid}/documents"
        assert await _ask(server, aid, ws, "Is parking free?") == DONT_KNOW

        status, doc = await _call(s, "POST", docs_url, json={"name": "parking", "text": PARKING})
        assert status == 201, doc
        assert doc["chunks"] == 1 and doc["content_type"] == "text/plain"
        assert await _ask(server, aid, ws, "Is parking free?") == PARKING

        markdown = (
            "# Museum\n\n## Tours\nThe **museum tour** takes about `two hours`.\n\n"
            "## Shop\n- Postcards\n- Books\n"
        )
        form = aiohttp.FormData()
        form.add_field("name", "museum guide")
        form.add_field("file", markdown.encode(), filename="guide.md")
        status, md_doc = await _call(s, "POST", docs_url, data=form)
        assert status == 201, md_doc
        assert (md_doc["name"], md_doc["content_type"], md_doc["chunks"]) == (
            "museum guide",
            "text/markdown",
            2,
        )
        answer = await _ask(server, aid, ws, "How long does the museum tour take?")
        assert answer == "The museum tour takes about two hours."

        pdf = make_pdf(["The cafeteria serves lunch from noon until two o'clock."])
        form = aiohttp.FormData()
        form.add_field("file", pdf, filename="cafe.pdf", content_type="application/pdf")
        status, pdf_doc = await _call(s, "POST", docs_url, data=form)
        assert status == 201, pdf_doc
        assert pdf_doc["name"] == "cafe.pdf" and pdf_doc["content_type"] == "application/pdf"
        assert "lunch" in await _ask(server, aid, ws, "When can I get lunch?")

        # A raw body works too, named by ?name=.
        status, raw_doc = await _call(
            s,
            "POST",
            docs_url,
            params={"name": "wifi"},
            data=b"The wifi password is on the back of your ticket.",
            headers={"Content-Type": "text/plain"},
        )
        assert status == 201 and raw_doc["name"] == "wifi"

        status, listed = await _call(s, "GET", docs_url)
        assert [d["name"] for d in listed["documents"]] == [
            "parking",
            "museum guide",
            "cafe.pdf",
            "wifi",
        ]
        assert (await _call(s, "DELETE", f"{docs_url}/{doc['id']}"))[0] == 204
        assert await _ask(server, aid, ws, "Is parking free?") == DONT_KNOW
        assert (await _call(s, "DELETE", f"{docs_url}/{doc['id']}"))[0] == 404
        assert (await _call(s, "DELETE", f"{docs_url}/not-a-uuid"))[0] == 404


async def test_viewers_read_but_do_not_write(server) -> None:
    workspace = unique_name("agents-roles")
    editor = await _key(server, "editor", workspace)
    viewer = await _key(server, "viewer", workspace)
    async with aiohttp.ClientSession() as s:
        status, agent = await _call(
            s, "POST", f"{server.url}/v1/agents", json={"name": "a"}, headers=editor
        )
        assert status == 201
        url = f"{server.url}/v1/agents/{agent['id']}"
        assert (await _call(s, "GET", url, headers=viewer))[0] == 200
        assert (await _call(s, "GET", f"{url}/documents", headers=viewer))[0] == 200
        assert (await _call(s, "GET", f"{server.url}/v1/convai/sessions", headers=viewer))[0] == 200
        writes = [
            ("POST", f"{server.url}/v1/agents", {"json": {"name": "b"}}),
            ("PATCH", url, {"json": {"name": "b"}}),
            ("DELETE", url, {}),
            ("POST", f"{url}/documents", {"json": {"text": "x"}}),
            ("DELETE", f"{url}/documents/{uuid.uuid4()}", {}),
        ]
        for method, target, kw in writes:
            status, err = await _call(s, method, target, headers=viewer, **kw)
            assert (status, err["error"]["code"]) == (403, "forbidden"), (method, target)
        assert (await _call(s, "GET", url, headers=editor))[1]["name"] == "a"


async def test_other_workspaces_see_nothing(server) -> None:
    mine = await _key(server, "owner")
    theirs = await _key(server, "owner")
    async with aiohttp.ClientSession() as s:
        status, agent = await _call(
            s,
            "POST",
            f"{server.url}/v1/agents",
            json={"name": "private", "knowledge": [PARKING]},
            headers=mine,
        )
        assert status == 201
        url = f"{server.url}/v1/agents/{agent['id']}"
        doc_id = agent["documents"][0]["id"]
        attempts = [
            ("GET", url, {}),
            ("PATCH", url, {"json": {"name": "stolen"}}),
            ("DELETE", url, {}),
            ("GET", f"{url}/documents", {}),
            ("POST", f"{url}/documents", {"json": {"text": "injected"}}),
            ("DELETE", f"{url}/documents/{doc_id}", {}),
        ]
        for method, target, kw in attempts:
            status, err = await _call(s, method, target, headers=theirs, **kw)
            assert (status, err["error"]["code"]) == (404, "not_found"), (method, target)
        assert (await _call(s, "GET", f"{server.url}/v1/agents", headers=theirs))[1] == {
            "agents": []
        }
        status, still = await _call(s, "GET", url, headers=mine)
        assert status == 200 and still["name"] == "private" and len(still["documents"]) == 1


async def test_conversations_are_listed_and_read(server) -> None:
    headers = await _key(server, "editor")
    rt = server.app
    async with aiohttp.ClientSession(headers=headers) as s:
        status, agent = await _call(s, "POST", f"{server.url}/v1/agents", json={"name": "c"})
        assert status == 201
        cid = await rt[CONVERSATIONS].create(
            agent["workspace_id"], agent["id"], "visitor-1", "websocket"
        )
        await rt[CONVERSATIONS].add_turn(cid, "agent", "Hello!")
        await rt[CONVERSATIONS].add_turn(cid, "user", "Is parking free?")
        await rt[CONVERSATIONS].end(cid, "ended")

        status, listed = await _call(s, "GET", f"{server.url}/v1/convai/sessions")
        assert status == 200 and [c["id"] for c in listed["sessions"]] == [cid]
        assert listed["sessions"][0]["turn_count"] == 2
        status, filtered = await _call(
            s, "GET", f"{server.url}/v1/convai/sessions", params={"agent_id": str(uuid.uuid4())}
        )
        assert filtered == {"sessions": []}
        status, got = await _call(s, "GET", f"{server.url}/v1/convai/sessions/{cid}")
        assert status == 200 and got["status"] == "ended"
        assert [(t["role"], t["text"]) for t in got["turns"]] == [
            ("agent", "Hello!"),
            ("user", "Is parking free?"),
        ]
        other = await _key(server, "owner")
        status, _ = await _call(s, "GET", f"{server.url}/v1/convai/sessions/{cid}", headers=other)
        assert status == 404


@pytest.mark.parametrize(
    ("method", "path", "kw", "status", "code"),
    [
        ("POST", "/v1/agents", {"data": b"{nope"}, 400, "invalid_json"),
        ("POST", "/v1/agents", {"json": [1]}, 422, "invalid_request"),
        ("POST", "/v1/agents", {"json": {}}, 422, "invalid_request"),
        ("POST", "/v1/agents", {"json": {"name": "   "}}, 422, "invalid_request"),
        ("POST", "/v1/agents", {"json": {"name": "x" * 201}}, 422, "invalid_request"),
        ("POST", "/v1/agents", {"json": {"name": "a", "bogus": 1}}, 422, "invalid_request"),
        ("POST", "/v1/agents", {"json": {"name": "a", "voice": "nobody"}}, 400, "unknown_voice"),
        (
            "POST",
            "/v1/agents",
            {"json": {"name": "a", "knowledge": "text"}},
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/agents",
            {"json": {"name": "a", "knowledge": ["x" * 100_001]}},
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/agents",
            {"json": {"name": "a", "llm": {"base_url": "ftp://x", "model": "m"}}},
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/agents",
            {"json": {"name": "a", "llm": {"model": "m"}}},
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/agents",
            {"json": {"name": "a", "llm": {"base_url": "http://x/v1"}}},
            422,
            "invalid_request",
        ),
        ("GET", "/v1/agents/not-a-uuid", {}, 404, "not_found"),
        ("GET", f"/v1/agents/{NOBODY}", {}, 404, "not_found"),
        ("PATCH", "/v1/agents/123", {"json": {"name": "b"}}, 404, "not_found"),
        ("DELETE", "/v1/agents/%20", {}, 404, "not_found"),
        ("GET", "/v1/agents/not-a-uuid/documents", {}, 404, "not_found"),
        ("GET", "/v1/convai/sessions/not-a-uuid", {}, 404, "not_found"),
        ("GET", "/v1/convai/sessions", {"params": {"agent_id": "zzz"}}, 422, "invalid_request"),
        ("GET", "/v1/convai/sessions", {"params": {"limit": "0"}}, 422, "invalid_request"),
        ("GET", "/v1/convai/sessions", {"params": {"before": "yesterday"}}, 422, "invalid_request"),
    ],
)
async def test_bad_agent_requests(
    server, method: str, path: str, kw: dict[str, Any], status: int, code: str
) -> None:
    async with aiohttp.ClientSession(headers=server.headers()) as s:
        got, err = await _call(s, method, f"{server.url}{path}", **kw)
    assert (got, err["error"]["code"]) == (status, code), err
    assert err["error"]["message"]


async def test_bad_documents_and_patches(server) -> None:
    async with aiohttp.ClientSession(headers=server.headers()) as s:
        status, agent = await _call(s, "POST", f"{server.url}/v1/agents", json={"name": "bad"})
        assert status == 201
        url = f"{server.url}/v1/agents/{agent['id']}"
        docs = f"{url}/documents"

        def form(data: bytes, filename: str, ctype: str | None = None) -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("file", io.BytesIO(data), filename=filename, content_type=ctype)
            return f

        no_file = aiohttp.FormData(default_to_multipart=True)
        no_file.add_field("name", "nothing")
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"json": {"text": "x" * 100_001}}, 422, "invalid_request"),
            ({"json": {"text": "   "}}, 422, "invalid_request"),
            ({"json": {"name": "a"}}, 422, "invalid_request"),
            (
                {"data": b"{nope", "headers": {"Content-Type": "application/json"}},
                400,
                "invalid_json",
            ),
            (
                {"data": form(b"%PDF-1.4 junk", "x.pdf", "application/pdf")},
                400,
                "unsupported_format",
            ),
            ({"data": form(b"GIF89a", "cat.gif", "image/gif")}, 400, "unsupported_format"),
            ({"data": form(b"\xff\xfe\xfa", "x.txt", "text/plain")}, 422, "invalid_request"),
            ({"data": no_file}, 422, "invalid_request"),
            (
                {"data": b"<xml/>", "headers": {"Content-Type": "application/xml"}},
                400,
                "unsupported_format",
            ),
            (
                {"data": form(b"x" * (5 * 1024 * 1024), "big.txt", "text/plain")},
                413,
                "payload_too_large",
            ),
            (
                {
                    "data": io.BytesIO(bytes(5 * 1024 * 1024)),
                    "headers": {"Content-Type": "text/plain"},
                },
                413,
                "payload_too_large",
            ),
        ]
        for kw, want_status, want_code in cases:
            got, err = await _call(s, "POST", docs, **kw)
            assert (got, err["error"]["code"]) == (want_status, want_code), (kw.keys(), err)
        assert (await _call(s, "GET", docs))[1] == {"documents": []}

        patches: list[tuple[dict[str, Any], int, str]] = [
            ({"name": None}, 422, "invalid_request"),
            ({"voice": "nobody"}, 400, "unknown_voice"),
            ({"knowledge": ["x"]}, 422, "invalid_request"),
            ({"public": "maybe"}, 422, "invalid_request"),
        ]
        for body, want_status, want_code in patches:
            got, err = await _call(s, "PATCH", url, json=body)
            assert (got, err["error"]["code"]) == (want_status, want_code), (body, err)
        assert (await _call(s, "GET", url))[1]["name"] == "bad"


async def test_agents_need_a_key(server) -> None:
    async with aiohttp.ClientSession() as s:
        status, err = await _call(s, "GET", f"{server.url}/v1/agents")
    assert (status, err["error"]["code"]) == (401, "unauthorized")
