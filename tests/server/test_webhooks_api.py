"""Outgoing webhooks through the real server to a real receiver on 127.0.0.1.

The receiver's requests are verified with ``standardwebhooks``, the reference library, and it
answers what each test scripts (500 then 200, 429 with Retry-After, 410). The session's server
allows private addresses (the receiver is one) and retries after 0.2 s (tests/conftest.py); a
server of the SSRF test keeps the default, private addresses refused, and a sender made here
shows the same refusal at send time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import standardwebhooks
from aiohttp import web

from helpers import StartedServer, settings_for_test_server, start_test_server
from jobs.sample_job_types import ECHO
from server.waiting import eventually
from voicestream.engines.catalog import EngineRegistry
from voicestream.jobs.webhook_sender import SenderConfig, WebhookSender
from voicestream.jobs.webhooks import enqueue_event, event_payload, new_secret, secret_context
from voicestream.rest.resources import POOL
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.secrets import SecretBox
from voicestream.store.webhooks import DueDelivery, WebhookRepository

# As the session's server is configured (tests/conftest.py).
TIMEOUT_S = 2
ATTEMPTS = 4  # the first and one per delay of its schedule
_PATHS = itertools.count(1)
SERVER_SECRET = "a-server-secret-for-the-send-time-tests-only"


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Route:
    """What one path of the receiver answers, in turn (200 once the script is used up)."""

    script: list[tuple[int, dict[str, str]]]
    received: list[Received] = field(default_factory=list)


class Receiver:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.url = ""

    def route(self, *script: int | tuple[int, dict[str, str]]) -> tuple[str, Route]:
        path = f"/hook/{next(_PATHS)}"
        steps = [s if isinstance(s, tuple) else (s, {}) for s in script]
        self.routes[path] = Route(steps)
        return self.url + path, self.routes[path]

    async def handle(self, request: web.Request) -> web.Response:
        route = self.routes[request.path]
        body = await request.read()
        route.received.append(Received(time.monotonic(), dict(request.headers), body))
        status, headers = route.script.pop(0) if route.script else (200, {})
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{n}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}"
    yield rec
    await runner.cleanup()


async def _call(
    http: aiohttp.ClientSession,
    server: StartedServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
) -> tuple[int, Any]:
    async with http.request(method, server.url + path, json=body, headers=server.headers(key)) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else None)


async def _endpoint(
    http: aiohttp.ClientSession, server: StartedServer, url: str, **extra: Any
) -> dict[str, Any]:
    status, created = await _call(http, server, "POST", "/v1/webhooks", {"url": url, **extra})
    assert status == 201, created
    return dict(created)


async def _delivery(
    http: aiohttp.ClientSession, server: StartedServer, hook: dict[str, Any], delivery_id: str
) -> dict[str, Any]:
    path = f"/v1/webhooks/{hook['id']}/deliveries/{delivery_id}"
    status, body = await _call(http, server, "GET", path)
    assert status == 200, body
    return dict(body)


async def _settled(
    http: aiohttp.ClientSession,
    server: StartedServer,
    hook: dict[str, Any],
    delivery_id: str,
    within: float = 10.0,
) -> dict[str, Any]:
    """The delivery once it has succeeded or failed."""

    async def done() -> dict[str, Any] | None:
        delivery = await _delivery(http, server, hook, delivery_id)
        return delivery if delivery["status"] != "pending" else None

    result: dict[str, Any] = await eventually(done, within=within, what="delivery settled")
    return result


def _verified(secret: str, received: Received) -> dict[str, Any]:
    payload: dict[str, Any] = standardwebhooks.Webhook(secret).verify(
        received.body, received.headers
    )
    return payload


async def _test_event(
    http: aiohttp.ClientSession, server: StartedServer, hook: dict[str, Any]
) -> dict[str, Any]:
    status, delivery = await _call(http, server, "POST", f"/v1/webhooks/{hook['id']}/test")
    assert status == 202, delivery
    return dict(delivery)


async def _workspace_id(server: StartedServer, name: str) -> uuid.UUID:
    found: uuid.UUID = await server.app[POOL].fetchval(
        "SELECT id FROM workspaces WHERE name = $1", name
    )
    return found


async def test_the_secret_is_shown_once_and_every_request_is_signed_with_it(
    server, receiver, http
) -> None:
    url, route = receiver.route()
    hook = await _endpoint(http, server, url)
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["*"]
    status, shown = await _call(http, server, "GET", f"/v1/webhooks/{hook['id']}")
    assert status == 200 and "secret" not in shown and shown["enabled"] is True
    _, listed = await _call(http, server, "GET", "/v1/webhooks")
    assert hook["secret"] not in str(listed)

    queued = await _test_event(http, server, hook)
    delivery = await _settled(http, server, hook, queued["id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 1
    assert [a["status_code"] for a in delivery["log"]] == [200]
    (received,) = route.received
    payload = _verified(hook["secret"], received)
    assert payload["type"] == "webhook.test" and payload["data"]["endpoint_id"] == hook["id"]
    assert received.headers["webhook-id"] == queued["event_id"] == delivery["event_id"]
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook("whsec_" + "A" * 44).verify(received.body, received.headers)


async def test_the_secret_is_stored_sealed(server, receiver, http) -> None:
    url, _ = receiver.route()
    hook = await _endpoint(http, server, url)
    stored = await server.app[POOL].fetchval(
        "SELECT secret_sealed FROM webhook_endpoints WHERE id = $1", uuid.UUID(hook["id"])
    )
    key = hook["secret"].removeprefix("whsec_")
    assert stored.startswith("enc:v2:") and key not in stored and hook["secret"] not in stored


async def test_a_500_is_retried_with_the_same_id_until_it_succeeds(server, receiver, http) -> None:
    url, route = receiver.route(500, 503)
    hook = await _endpoint(http, server, url)
    queued = await _test_event(http, server, hook)
    delivery = await _settled(http, server, hook, queued["id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["log"]] == [500, 503, 200]
    assert len({r.headers["webhook-id"] for r in route.received}) == 1
    for received in route.received:  # each attempt signed afresh, with its own timestamp
        _verified(hook["secret"], received)


async def test_retry_after_is_honoured(server, receiver, http) -> None:
    url, route = receiver.route((429, {"Retry-After": "1"}))
    hook = await _endpoint(http, server, url)
    queued = await _test_event(http, server, hook)
    delivery = await _settled(http, server, hook, queued["id"])
    assert [a["status_code"] for a in delivery["log"]] == [429, 200]
    first, second = route.received
    # The schedule alone would have retried after 0.2 s.
    assert second.at - first.at >= 1.0


async def test_retries_end_in_failure_after_the_schedule(server, receiver, http) -> None:
    url, route = receiver.route(*[500] * ATTEMPTS)
    hook = await _endpoint(http, server, url)
    queued = await _test_event(http, server, hook)
    delivery = await _settled(http, server, hook, queued["id"])
    assert delivery["status"] == "failed" and delivery["attempts"] == ATTEMPTS
    assert delivery["last_status_code"] == 500
    assert f"gave up after {ATTEMPTS} attempts" in delivery["last_error"]
    assert len(route.received) == ATTEMPTS


async def test_a_receiver_failing_again_and_again_is_left_alone_while_its_circuit_is_open(
    server, receiver, http
) -> None:
    """Five failures in a row (VOICESTREAM_BREAKER_FAILURES) open the endpoint's circuit: the
    next attempt is not sent at all, waits out the open period instead of the schedule, and
    the state shows on /metrics."""
    url, route = receiver.route(*[500] * 20)
    hook = await _endpoint(http, server, url)
    first = await _settled(http, server, hook, (await _test_event(http, server, hook))["id"])
    assert first["status"] == "failed" and len(route.received) == ATTEMPTS  # 4 of 5

    second = await _test_event(http, server, hook)

    async def refused_once() -> dict[str, Any] | None:
        delivery = await _delivery(http, server, hook, second["id"])
        return delivery if delivery["attempts"] >= 2 else None

    delivery = await eventually(refused_once, what="a second attempt")
    assert len(route.received) == ATTEMPTS + 1  # the fifth failure; the next was never sent
    assert [a["status_code"] for a in delivery["log"]] == [500, None]
    assert "unavailable" in delivery["log"][-1]["error"]
    assert delivery["status"] == "pending"
    # Not the 0.2 s schedule: the rest of the 30 s the circuit stays open.
    waits = datetime.fromisoformat(delivery["next_attempt_at"]) - datetime.now(UTC)
    assert waits.total_seconds() > 20
    async with http.get(server.url + "/metrics") as answer:
        text = await answer.text()
    assert f'voicestream_circuit_state{{dependency="webhook:{hook["id"]}"}} 2.0' in text


async def test_410_disables_the_endpoint_until_it_is_enabled(server, receiver, http) -> None:
    url, route = receiver.route(410)
    hook = await _endpoint(http, server, url)
    gone = await _test_event(http, server, hook)
    delivery = await _settled(http, server, hook, gone["id"])
    assert delivery["status"] == "failed" and delivery["last_status_code"] == 410
    _, shown = await _call(http, server, "GET", f"/v1/webhooks/{hook['id']}")
    assert shown["enabled"] is False and "410" in shown["disabled_reason"]

    # Disabled: nothing is sent; events wait, and redelivery says why it cannot.
    waiting = await _test_event(http, server, hook)
    path = f"/v1/webhooks/{hook['id']}/deliveries/{gone['id']}/redeliver"
    status, refused = await _call(http, server, "POST", path)
    assert status == 409 and refused["error"]["code"] == "conflict", refused
    assert len(route.received) == 1

    status, enabled = await _call(
        http, server, "PATCH", f"/v1/webhooks/{hook['id']}", {"enabled": True}
    )
    assert status == 200 and enabled["enabled"] and enabled["disabled_reason"] is None
    resumed = await _settled(http, server, hook, waiting["id"])
    assert resumed["status"] == "succeeded" and len(route.received) == 2


async def test_redelivery_sends_the_same_event_again(server, receiver, http) -> None:
    url, route = receiver.route()
    hook = await _endpoint(http, server, url)
    queued = await _test_event(http, server, hook)
    await _settled(http, server, hook, queued["id"])
    path = f"/v1/webhooks/{hook['id']}/deliveries/{queued['id']}/redeliver"
    status, again = await _call(http, server, "POST", path)
    assert status == 202 and again["status"] == "pending" and again["attempts"] == 0
    await eventually(lambda: len(route.received) == 2, what="the redelivery")
    delivery = await _settled(http, server, hook, queued["id"])
    assert delivery["status"] == "succeeded" and len(delivery["log"]) == 2
    first, second = route.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == queued["event_id"]
    _verified(hook["secret"], second)


async def test_an_event_is_enqueued_once_per_endpoint_in_the_callers_transaction(
    server, receiver, http
) -> None:
    workspace = await _workspace_id(server, "tests")
    url, route = receiver.route()
    hook = await _endpoint(http, server, url, events=["job.completed"])
    other_url, other_route = receiver.route()
    failed_only = await _endpoint(http, server, other_url, events=["job.failed"])
    job_id = uuid.uuid4()
    event_id = f"evt_{job_id}_completed"
    pool = server.app[POOL]
    async with pool.acquire() as conn, conn.transaction():  # a job completing twice
        await enqueue_event(
            conn, workspace, "job.completed", {"id": str(job_id)}, event_id=event_id
        )
    async with pool.acquire() as conn, conn.transaction():
        await enqueue_event(
            conn, workspace, "job.completed", {"id": str(job_id)}, event_id=event_id
        )
    with pytest.raises(RuntimeError):  # rolled back: nothing stored, nothing sent
        async with pool.acquire() as conn, conn.transaction():
            await enqueue_event(conn, workspace, "job.completed", {}, event_id="evt_rolled_back")
            raise RuntimeError("the job's transaction fails")

    _, page = await _call(http, server, "GET", f"/v1/webhooks/{hook['id']}/deliveries")
    assert [d["event_id"] for d in page["data"]] == [event_id]
    delivery = await _settled(http, server, hook, page["data"][0]["id"])
    assert delivery["status"] == "succeeded"
    (received,) = route.received
    payload = _verified(hook["secret"], received)
    assert payload["type"] == "job.completed" and payload["data"] == {"id": str(job_id)}
    _, other = await _call(http, server, "GET", f"/v1/webhooks/{failed_only['id']}/deliveries")
    assert other["data"] == [] and other_route.received == []


async def test_a_completed_job_is_announced_once_signed(server, receiver, http) -> None:
    """The job lifecycle enqueues ``job.completed`` in the transaction that completes it."""
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=f"hooked-jobs-{uuid.uuid4().hex[:8]}", role="owner"
    )
    url, route = receiver.route()
    status, hook = await _call(http, server, "POST", "/v1/webhooks", {"url": url}, key=key)
    assert status == 201, hook
    body = {"type": ECHO, "input": {"text": "announced"}}
    status, job = await _call(http, server, "POST", "/v1/jobs", body, key=key)
    assert status == 202, job
    await eventually(lambda: route.received, within=20, what="the job.completed webhook")
    (received,) = route.received
    payload = _verified(hook["secret"], received)
    assert received.headers["webhook-id"] == f"evt_{job['id']}_completed"
    assert payload["type"] == "job.completed" and payload["data"]["id"] == job["id"]


async def test_the_delivery_log_is_paged(server, receiver, http) -> None:
    url, _ = receiver.route()
    hook = await _endpoint(http, server, url)
    queued = [(await _test_event(http, server, hook))["id"] for _ in range(3)]
    path = f"/v1/webhooks/{hook['id']}/deliveries"
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = await _call(http, server, "GET", path + query)
        assert status == 200, page
        seen += [d["id"] for d in page["data"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == queued[::-1]  # newest first, each once
    status, bad = await _call(http, server, "GET", path + "?cursor=nonsense")
    assert status == 422 and bad["error"]["code"] == "invalid_request"


async def test_another_workspaces_endpoint_is_not_found(server, receiver, http) -> None:
    url, _ = receiver.route()
    hook = await _endpoint(http, server, url)
    delivery = await _test_event(http, server, hook)
    _, stranger = await ApiKeyRepository(server.app[POOL]).create(
        workspace=f"strangers-{uuid.uuid4().hex[:8]}", role="owner"
    )
    base = f"/v1/webhooks/{hook['id']}"
    missing = f"/v1/webhooks/{uuid.uuid4()}"
    calls = [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/deliveries"),
        ("GET", f"/deliveries/{delivery['id']}"),
        ("POST", f"/deliveries/{delivery['id']}/redeliver"),
        ("POST", "/test"),
    ]
    for method, tail in calls:
        body = {"enabled": False} if method == "PATCH" else None
        theirs = await _call(http, server, method, base + tail, body, key=stranger)
        nobody = await _call(http, server, method, missing + tail, body, key=stranger)
        assert theirs[0] == nobody[0] == 404, (method, tail, theirs)
        assert theirs[1]["error"]["code"] == "not_found"
    _, listed = await _call(http, server, "GET", "/v1/webhooks", key=stranger)
    assert listed == {"data": []}
    status, _ = await _call(http, server, "GET", "/v1/webhooks/not-a-uuid")
    assert status == 404
    # Still the owner's, untouched.
    _, shown = await _call(http, server, "GET", base)
    assert shown["enabled"] is True


async def test_bad_endpoints_are_refused(server, http) -> None:
    for body in (
        {"url": "ftp://example.com/hook"},
        {"url": "https://example.com/hook#part"},
        {"url": "not a url"},
        {"url": "https://example.com/hook", "events": ["job.exploded"]},
        {"url": "https://example.com/hook", "events": []},
        {"url": "https://example.com/hook", "secret": "whsec_mine"},
    ):
        status, refused = await _call(http, server, "POST", "/v1/webhooks", body)
        assert status == 422 and refused["error"]["code"] == "invalid_request", (body, refused)


# --- private addresses refused (the default) --------------------------------------------------

PRIVATE_URLS = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",
    "http://[fe80::1]/hook",
    "http://[fc00::1]/hook",
    "http://[ff02::1]/hook",
    "http://[2002:7f00:1::1]/hook",
]


async def test_private_addresses_are_refused_when_an_endpoint_is_added(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    # Started here rather than for the module: its sender must not meet the other tests'
    # deliveries to the receiver on loopback, which it would refuse.
    settings = settings_for_test_server(embedded_services, tmp_path)
    assert settings.webhook_allow_private is False  # the default
    async with start_test_server(settings, registry, key_workspace="strict-hooks") as strict:
        wrong = []
        for url in PRIVATE_URLS:
            status, body = await _call(http, strict, "POST", "/v1/webhooks", {"url": url})
            if status != 422 or "public" not in body["error"]["message"]:
                wrong.append((url, status, body))
        assert not wrong
        _, listed = await _call(http, strict, "GET", "/v1/webhooks")
        assert listed == {"data": []}


def _due(url: str) -> DueDelivery:
    workspace_id, endpoint_id = uuid.uuid4(), uuid.uuid4()
    return DueDelivery(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        endpoint_id=endpoint_id,
        claim_id=uuid.uuid4(),
        event_id="evt_send_time",
        payload=event_payload("webhook.test", {}),
        attempts=1,
        url=url,
        secret_sealed=SecretBox(SERVER_SECRET).seal(
            new_secret(), context=secret_context(workspace_id, endpoint_id)
        ),
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_addresses_are_refused_when_sending(server, receiver, host: str) -> None:
    """DNS may answer differently after an endpoint was added: the address is checked again
    at every attempt, an IP literal by the sender, a name by its HTTP client's resolver."""
    url, route = receiver.route()
    due = _due(url.replace("127.0.0.1", host))
    config = SenderConfig(delays=(5.0,), timeout_s=TIMEOUT_S, allow_private=False)
    sender = WebhookSender(WebhookRepository(server.app[POOL]), SecretBox(SERVER_SECRET), config)
    async with sender.client_session() as session:
        refused = await sender.attempt(session, due)
    assert refused.status_code is None and "not a public address" in (refused.error or "")
    assert refused.status == "pending"  # retried later, and refused again
    assert route.received == []

    allowed = WebhookSender(
        WebhookRepository(server.app[POOL]),
        SecretBox(SERVER_SECRET),
        SenderConfig(delays=(5.0,), timeout_s=TIMEOUT_S, allow_private=True),
    )
    async with allowed.client_session() as session:
        sent = await allowed.attempt(session, due)
    assert sent.status == "succeeded" and len(route.received) == 1


async def test_timeouts_count_as_failed_attempts(server, http) -> None:
    """A receiver that accepts the connection but never answers."""
    stalled: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.append(writer)

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        hook = await _endpoint(http, server, f"http://127.0.0.1:{port}/slow")
        queued = await _test_event(http, server, hook)

        async def attempted() -> dict[str, Any] | None:
            delivery = await _delivery(http, server, hook, queued["id"])
            return delivery if delivery["log"] else None

        delivery = await eventually(attempted, within=TIMEOUT_S + 10, what="the timed-out attempt")
        assert f"no answer within {TIMEOUT_S} s" in delivery["log"][0]["error"]
        await _call(http, server, "DELETE", f"/v1/webhooks/{hook['id']}")
    finally:
        for writer in stalled:
            writer.close()
        listener.close()
        await listener.wait_closed()
