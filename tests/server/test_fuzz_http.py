"""Property-based fuzzing of every HTTP route with malformed input.

The routes come from the application's own router, so a route added later is fuzzed without
anyone listing it here (``test_every_live_route_is_fuzzed`` checks that the list matches the
running server). For each route, hypothesis draws path parameters, query strings, headers and
bodies from ``fuzz_inputs`` and the test asserts, per request:

- no 5xx, and every 4xx carries a JSON error body (SCIM's own error document under /scim/v2);
- an answer (body included) within a deadline: nothing hangs;
- nothing in the server log at ERROR or with a traceback;
- the server still answers ``/healthz``.

Examples are bounded and derandomized, so the suite takes the same few seconds on every run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from fuzz_inputs import (
    TEXT,
    encode_path_segment,
    fuzz_identity,
    fuzz_settings,
    query_strings,
    request_bodies,
)
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from voicestream.config import load_settings
from voicestream.server.app import create_app

EXAMPLES_PER_ROUTE = 25
DEADLINE_S = 10.0
SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
FUZZ = fuzz_settings(EXAMPLES_PER_ROUTE)


def _route_table() -> list[tuple[str, str]]:
    # An app built only to read its router: nothing starts until an app runs.
    app = create_app(load_settings({}))
    return sorted(
        {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"  # HEAD is GET's handler
        }
    )


ROUTES = _route_table()


PATH_VALUES = st.one_of(
    st.sampled_from(["slt", "whisper-1", "tts-1", "x", "0", "-1", "%00", "AGENT", "a" * 300]),
    TEXT,
)
ODD_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "Content-Encoding",
            "Accept",
            "Origin",
            "X-Twilio-Signature",
            "Sec-WebSocket-Protocol",
            "Upgrade",
            "Range",
            "Accept-Encoding",
        ]
    ),
    st.sampled_from(
        ["gzip", "br", "deflate", "text/html", "null", "https://evil.example", "bearer.x", "x", ""]
    ),
    max_size=2,
)
AUTH = st.sampled_from(["key", "key", "key", "key", "none", "garbage", "xi"])


def _url(server: Any, path: str, params: list[str], agent_id: str, query: str) -> URL:
    resource = path
    for value in params[: path.count("{")]:
        start = resource.index("{")
        end = resource.index("}", start)
        segment = agent_id if value == "AGENT" else encode_path_segment(value)
        resource = resource[:start] + (segment or "x") + resource[end + 1 :]
    return URL(f"{server.url}{resource}" + (f"?{query}" if query else ""), encoded=True)


def _headers(auth: str, key: str, content_type: str | None, odd: dict[str, str]) -> dict[str, str]:
    headers = dict(odd)
    if auth == "key":
        headers["Authorization"] = f"Bearer {key}"
    elif auth == "xi":
        headers["xi-api-key"] = key
    elif auth == "garbage":
        headers["Authorization"] = "Bearer vs_garbage"
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def _server_errors(error_log: Any) -> list[str]:
    records: list[logging.LogRecord] = error_log.records
    return [f"{r.name}: {r.getMessage()}" for r in records]


def _refused_by_the_parser(url: URL, headers: dict[str, str]) -> bool:
    """Requests aiohttp's HTTP parser answers itself, before any of our code runs, with a
    plain-text 400: a request line past its 8190-byte limit, or a body that does not undo the
    Content-Encoding it declares (decoded as it arrives, so a small body fails in the parser;
    a larger one fails in the handler, which answers JSON). The raw-socket test in
    test_malformed_requests.py checks that these leave no traceback in the log."""
    too_long = len(url.raw_path_qs) + 16 > 8190
    return too_long or "Content-Encoding" in headers


async def _check_response(r: aiohttp.ClientResponse, what: str, parser_refused: bool) -> None:
    body = await r.read()  # the whole of it: a stream that breaks midway fails here
    assert r.status < 500, f"{what} -> {r.status}: {body[:300]!r}"
    if parser_refused and r.status == 400 and r.content_type == "text/plain":
        return
    scim = r.url.path.startswith("/scim/v2/")
    if r.status >= 400 and r.method != "HEAD" and scim and not parser_refused:
        # SCIM answers its errors in its own shape (RFC 7644 §3.12); what the HTTP parser
        # may refuse before any routing (see above) is answered like any other request.
        assert r.content_type == "application/scim+json", f"{what} -> {r.status} {body[:300]!r}"
    if r.status >= 400 and r.method != "HEAD" and r.content_type == "application/scim+json":
        assert scim, f"{what} -> a SCIM error outside /scim/v2"
        error = await r.json(content_type=None)
        assert SCIM_ERROR in error["schemas"] and error["status"] == str(r.status), error
    elif r.status >= 400 and r.method != "HEAD":
        assert r.content_type == "application/json", f"{what} -> {r.status} {body[:300]!r}"
        error = await r.json()
        assert "error" in error or "detail" in error, f"{what} -> {error}"


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@FUZZ
@given(
    params=st.lists(PATH_VALUES, min_size=3, max_size=3),
    query=query_strings(),
    body=request_bodies(),
    auth=AUTH,
    odd=ODD_HEADERS,
)
async def test_route_survives_malformed_requests(
    server: Any,
    error_log: Any,
    method: str,
    path: str,
    params: list[str],
    query: str,
    body: tuple[str | None, bytes],
    auth: str,
    odd: dict[str, str],
) -> None:
    fuzz = await fuzz_identity(server, "fuzz")
    url = _url(server, path, params, fuzz.agent_id, query)
    content_type, data = body
    key = fuzz.scim_token if path.startswith("/scim/v2/") else fuzz.key
    headers = _headers(auth, key, content_type, odd)
    what = f"{method} {url} {headers} body={data[:120]!r}"
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        async with asyncio.timeout(DEADLINE_S):
            async with s.request(
                method, url, data=data or None, headers=headers, allow_redirects=False
            ) as r:
                await _check_response(r, what, _refused_by_the_parser(url, headers))
        assert not _server_errors(error_log), f"{what}: " + "\n".join(_server_errors(error_log))
        async with asyncio.timeout(DEADLINE_S), s.get(f"{server.url}/healthz") as r:
            assert r.status == 200, f"after {what}: /healthz {r.status}"


async def test_every_live_route_is_fuzzed(server: Any) -> None:
    live = {
        (route.method, route.resource.canonical)
        for route in server.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert live == set(ROUTES)
