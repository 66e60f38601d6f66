"""The authorization matrix, generated from the policy table (``identity/policy.py``).

For every route the server mounts (the table and the live router are asserted equal) and for
every caller — API keys of each role, a key limited to the ``tts`` scope, and signed-in people
of each role — the exact outcome is asserted, on the caller's own objects and on another
workspace's:

- a role (or a key's scopes) lacking the action: 403 ``forbidden``, before any lookup;
- allowed: the request gets past authorization (neither 401 nor 403, and no 404 for the
  caller's own objects; the bodies are deliberately empty or invalid, so that acting routes
  answer 400/422 at once; a socket upgrades);
- another workspace's object: 404, with the very body a missing id gets.

One request each, over HTTP, against the session's server; objects are made once per
workspace, and afresh for each caller a deleting route would destroy them for.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest

from server.dub_media import stored_dub
from server.project_objects import missing_project_ids, stored_project
from server.studio_objects import missing_studio_ids, stored_studio_project
from server.workspace_people import person, team
from voicestream.identity import policy
from voicestream.identity.members import MEMBERS
from voicestream.identity.policy import Rule
from voicestream.identity.scim_provisioning import ScimProvisioning
from voicestream.rest.files import FILES
from voicestream.rest.resources import AGENTS, POOL
from voicestream.server.route_policy import mounted_routes
from voicestream.store import jobs as job_store
from voicestream.store.agents import NewDocument
from voicestream.store.conversations import ConversationRepository
from voicestream.store.history import HistoryRepository, NewHistoryItem, new_history_id
from voicestream.store.invitations import InvitationRepository
from voicestream.store.keys import ROLES, ApiKeyRepository, Role, role_rank
from voicestream.store.moderation import ModerationRepository
from voicestream.store.operator_keys import OperatorKeyRepository
from voicestream.store.webhooks import WebhookRepository

RULES = sorted(policy.ROUTES.values(), key=lambda rule: (rule.route, rule.method))

# What the requests carry besides the path: enough to get past the first checks where a route
# would otherwise refuse before it looks anything up, never enough to make anything.
# ``{agent_id}`` is the caller's (or the other workspace's) agent.
_AGENT_QUERY = {"params": {"agent_id": "{agent_id}"}}
INPUTS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/convai/stream"): _AGENT_QUERY,
    ("GET", "/elevenlabs/v1/convai/conversation"): _AGENT_QUERY,
    ("GET", "/elevenlabs/v1/convai/conversation/get-signed-url"): _AGENT_QUERY,
    ("GET", "/elevenlabs/v1/convai/conversation/get_signed_url"): _AGENT_QUERY,
    ("GET", "/v1/telephony/twilio"): _AGENT_QUERY,
    ("GET", "/v1/telephony/telnyx"): _AGENT_QUERY,
    ("GET", "/v1/telephony/vonage"): _AGENT_QUERY,
    ("GET", "/v1/telephony/vonage/answer"): _AGENT_QUERY,
    ("GET", "/openai/v1/realtime"): {"params": {"model": "gpt-realtime"}},
    ("GET", "/elevenlabs/v1/speech-to-text/realtime"): {
        "params": {"model_id": "scribe_v2_realtime"}
    },
    # An invalid timeline: an empty one would be stored, and the clip routes find none.
    ("PUT", "/v1/projects/{project_id}"): {"json": {"tracks": "none"}},
    # Invalid bodies: a valid one would start a dubbing job per caller.
    ("POST", "/v1/dubbing/{dub_id}/render"): {"json": {"languages": []}},
    ("POST", "/elevenlabs/v1/dubbing/resource/{dub_id}/dub"): {"json": {"segments": "all"}},
    # Invalid bodies: a valid one would export the workspace, or run its retention, per caller.
    ("POST", "/v1/admin/data-exports"): {"json": {"matrix": True}},
    ("POST", "/v1/admin/retention/runs"): {"json": {"matrix": True}},
    ("POST", "/elevenlabs/v1/dubbing/resource/{dub_id}/render/{language}"): {
        "json": {"render_type": 5}
    },
}
# Deleting (or changing) one of these destroys it for the next caller: each caller allowed to
# gets its own, made just before.
DESTRUCTIVE = {
    ("DELETE", "/v1/agents/{agent_id}"),
    ("DELETE", "/v1/agents/{agent_id}/documents/{document_id}"),
    ("DELETE", "/elevenlabs/v1/history/{history_item_id}"),
    ("DELETE", "/v1/api-keys/{key_id}"),
    ("DELETE", "/v1/workspaces/{workspace_id}/members/{user_id}"),
    ("DELETE", "/v1/admin/seats/{user_id}"),
    ("DELETE", "/v1/workspaces/{workspace_id}/invitations/{invitation_id}"),
    ("DELETE", "/v1/webhooks/{webhook_id}"),
    ("DELETE", "/v1/files/{file_id}"),
    ("DELETE", "/v1/projects/{project_id}"),
    ("DELETE", "/v1/projects/{project_id}/clips/{clip_id}"),
    ("DELETE", "/v1/dubbing/{dub_id}"),
    ("DELETE", "/elevenlabs/v1/dubbing/{dub_id}"),
    ("DELETE", "/elevenlabs/v1/studio/projects/{studio_project_id}"),
    ("DELETE", "/elevenlabs/v1/studio/projects/{studio_project_id}/chapters/{chapter_id}"),
}
# Signing out everywhere ends every session of the caller's user: each signed-in caller
# allowed to is a new person of the same role, so the world's people stay signed in.
ENDS_SESSIONS = {("POST", "/v1/auth/logout-everywhere")}
# Path parameters that name the server's things, the same for every workspace.
# Sockets that answer before the client says anything: which agent answers (or that none does)
# shows in their first message. The others wait for the client (a carrier's start event).
SPEAKS_FIRST = {("GET", "/v1/convai/stream")}
SOCKET_FIRST_MESSAGE_S = 10.0
SHARED_VALUES = {
    "voice_id": "slt",
    "model": "tts-1",
    "provider": "google",
    "language": "en",
    "format": "srt",
    # A tombstone belongs to no workspace: read with its receipt (none here: a 422).
    "deletion_id": "00000000-0000-4000-8000-000000000024",
    "resource_type": "User",
    "schema_id": "urn:ietf:params:scim:schemas:core:2.0:User",
}


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role
    headers: dict[str, str]
    key: bool
    scopes: frozenset[str] | None = None
    operator: bool = False  # the server operator's key: its own routes, and nothing else

    def allowed(self, rule: Rule) -> bool:
        if rule.access == "operator" or self.operator:
            return rule.access == "operator" and self.operator
        if rule.access == "scim_token":
            return False  # an identity provider's SCIM token only (tests/server/test_scim_*)
        if rule.access == "user_session":
            return not self.key
        if rule.scope is not None and self.scopes is not None and rule.scope not in self.scopes:
            return False
        return role_rank(self.role) >= role_rank(rule.role)


@dataclass
class Workspace:
    name: str
    id: str
    callers: list[Caller] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # path parameter -> an object's id


CALLER_NAMES = [f"{role} key" for role in ROLES] + ["tts-only editor key"]
CALLER_NAMES += [f"{role} user" for role in ROLES] + ["operator key"]


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with http.request(method, url, **kw) as r:
        assert r.status in (200, 201), (url, r.status, await r.text())
        return await r.json()


async def _workspace(server: Any, http: aiohttp.ClientSession) -> Workspace:
    name, workspace_id, people = await team(server)
    ws = Workspace(name, workspace_id)
    pool = server.app[POOL]
    keys = ApiKeyRepository(pool)
    for role in ROLES:
        _, secret = await keys.create(workspace_id=uuid.UUID(workspace_id), role=role)
        ws.callers.append(Caller(f"{role} key", role, {"Authorization": f"Bearer {secret}"}, True))
    _, secret = await keys.create(
        workspace_id=uuid.UUID(workspace_id), role="editor", scopes=["tts"]
    )
    tts_only = {"Authorization": f"Bearer {secret}"}
    ws.callers.append(Caller("tts-only editor key", "editor", tts_only, True, frozenset({"tts"})))
    for role in ROLES:
        headers = {"Authorization": f"Bearer {people[role].token}"}
        ws.callers.append(Caller(f"{role} user", role, headers, False))
    _, secret = await OperatorKeyRepository(pool).create("matrix")
    operator = {"Authorization": f"Bearer {secret}"}
    ws.callers.append(Caller("operator key", "viewer", operator, True, operator=True))
    owner = ws.callers[0].headers
    ws.ids["workspace_id"] = workspace_id
    ws.ids["agent_id"] = await _agent(server, http, owner)
    ws.ids["document_id"] = await _document(server, workspace_id, ws.ids["agent_id"])
    ws.ids["conversation_id"] = await ConversationRepository(pool).create(
        workspace_id, ws.ids["agent_id"], None, "websocket"
    )
    ws.ids["history_item_id"] = await _history_item(server, workspace_id)
    ws.ids["key_id"] = await _key(server, workspace_id)
    ws.ids["user_id"] = (await person(server, name, "viewer")).id
    ws.ids["invitation_id"] = await _invitation(server, workspace_id)
    ws.ids["webhook_id"], ws.ids["delivery_id"] = await _webhook(server, workspace_id)
    ws.ids["file_id"] = await _file(server, workspace_id)
    ws.ids["job_id"] = await _job(server, workspace_id)
    ws.ids["export_id"] = await _finished_export(server, workspace_id)
    ws.ids["dub_id"] = await stored_dub(server, workspace_id)
    ws.ids["segment_id"] = "seg_0000"
    ws.ids["item_id"] = await _moderation_item(server, workspace_id)
    ws.ids.update(await stored_studio_project(server, workspace_id))
    ws.ids.update(await stored_project(server, workspace_id))
    ws.ids.update(await _scim_ids(server, workspace_id))
    return ws


async def _agent(server: Any, http: aiohttp.ClientSession, headers: dict[str, str]) -> str:
    body = {"name": "matrix", "voice": "slt"}
    return str(
        (await _json(http, "POST", server.url + "/v1/agents", json=body, headers=headers))["id"]
    )


async def _document(server: Any, workspace_id: str, agent: str) -> str:
    # Stored without passages (no embedding to wait for): what is asserted is who reaches it.
    new = NewDocument("d", "text/plain", "Parking is free.", 0)
    return str((await server.app[AGENTS].add_document(workspace_id, agent, new)).id)


async def _history_item(server: Any, workspace_id: str) -> str:
    new = NewHistoryItem("slt", "Kept.", "pcm_16000", "audio/pcm")
    history = HistoryRepository(server.app[POOL])
    return (await history.add((uuid.UUID(workspace_id), None), new, bytes(320))).id


async def _moderation_item(server: Any, workspace_id: str) -> str:
    item, _ = await ModerationRepository(server.app[POOL]).hold(
        uuid.UUID(workspace_id),
        text_sha256=uuid.uuid4().hex,
        text="Held.",
        source="tts",
        category="review_list",
        score=None,
    )
    return str(item.id)


async def _key(server: Any, workspace_id: str) -> str:
    repo = ApiKeyRepository(server.app[POOL])
    key, _ = await repo.create(workspace_id=uuid.UUID(workspace_id), role="viewer")
    return str(key.id)


async def _invitation(server: Any, workspace_id: str) -> str:
    repo = InvitationRepository(server.app[POOL])
    invitation = await repo.create(
        uuid.UUID(workspace_id), "invited@example.com", "viewer", os.urandom(32), 3600, None
    )
    return str(invitation.id)


async def _fresh(
    server: Any, http: aiohttp.ClientSession, ws: Workspace, rule: Rule
) -> dict[str, str]:
    """Ids for ``rule`` whose last object is new (a deleting route destroys it)."""
    ids = dict(ws.ids)
    owner = ws.callers[0].headers
    if "studio_project_id" in rule.route:
        ids.update(await stored_studio_project(server, ws.id))
    elif "document_id" in rule.route:
        ids["document_id"] = await _document(server, ws.id, ids["agent_id"])
    elif "agent_id" in rule.route:
        ids["agent_id"] = await _agent(server, http, owner)
    elif "history_item_id" in rule.route:
        ids["history_item_id"] = await _history_item(server, ws.id)
    elif "key_id" in rule.route:
        ids["key_id"] = await _key(server, ws.id)
    elif "user_id" in rule.route:
        ids["user_id"] = (await person(server, ws.name, "viewer")).id
    elif "invitation_id" in rule.route:
        ids["invitation_id"] = await _invitation(server, ws.id)
    elif "webhook_id" in rule.route:
        ids["webhook_id"], ids["delivery_id"] = await _webhook(server, ws.id)
    elif "file_id" in rule.route:
        ids["file_id"] = await _file(server, ws.id)
    elif "dub_id" in rule.route:
        ids["dub_id"] = await stored_dub(server, ws.id)
    elif "{project_id}" in rule.route:
        ids.update(await stored_project(server, ws.id))
    return ids


async def _file(server: Any, workspace_id: str) -> str:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"matrix"

    record = await server.app[FILES].upload(
        workspace_id, name="m.txt", content_type="text/plain", chunks=chunks()
    )
    return str(record.id)


async def _job(server: Any, workspace_id: str) -> str:
    """A queued job, stored directly without an outbox row: no worker ever runs it (its type
    is not one), so it waits for the matrix's reads and cancels (a second cancel is 409)."""
    async with server.app[POOL].acquire() as conn:
        job = await job_store.insert_job(
            conn,
            job_store.NewJob(
                id=uuid.uuid4(),
                workspace_id=uuid.UUID(workspace_id),
                type="test.matrix",
                input={},
                max_attempts=1,
                idempotency_key=None,
                request_hash=None,
                created_by_user=None,
                created_by_key=None,
            ),
        )
    return str(job.id)


async def _finished_export(server: Any, workspace_id: str) -> str:
    """A data export's job, stored directly as cancelled: no worker runs it, reads find it."""
    job_id = uuid.UUID(await _job(server, workspace_id))
    await server.app[POOL].execute(
        "UPDATE jobs SET type = 'data_export', status = 'cancelled', finished_at = now() "
        "WHERE id = $1",
        job_id,
    )
    return str(job_id)


async def _webhook(server: Any, workspace_id: str) -> tuple[str, str]:
    """An endpoint and a delivery of it, stored directly: the session's server refuses private
    URLs, and this one (TEST-NET-3, not public) is refused at send time without a packet."""
    repo = WebhookRepository(server.app[POOL])
    endpoint_id = uuid.uuid4()
    await repo.create(
        uuid.UUID(workspace_id),
        endpoint_id,
        url="https://203.0.113.9/matrix",
        events=["*"],
        secret_sealed="whsec_AAAA",
    )
    delivery = await repo.add_delivery(
        uuid.UUID(workspace_id), endpoint_id, "webhook.test", "evt_matrix", "{}"
    )
    assert delivery is not None
    return str(endpoint_id), str(delivery.id)


async def _scim_ids(server: Any, workspace_id: str) -> dict[str, str]:
    scim = ScimProvisioning.open(server.app[POOL], server.app[MEMBERS])
    _, token = await scim.mint_token(uuid.UUID(workspace_id), "matrix")
    # The SCIM resources are reached with a SCIM token alone, which no caller here holds.
    return {
        "scim_token_id": str(token.id),
        "scim_user_id": str(uuid.uuid4()),
        "scim_group_id": str(uuid.uuid4()),
    }


def _missing_ids() -> dict[str, str]:
    return {
        "workspace_id": str(uuid.uuid4()),
        "agent_id": str(uuid.uuid4()),
        "document_id": str(uuid.uuid4()),
        "conversation_id": str(uuid.uuid4()),
        "history_item_id": new_history_id(),
        "export_id": str(uuid.uuid4()),
        "key_id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "invitation_id": str(uuid.uuid4()),
        "webhook_id": str(uuid.uuid4()),
        "delivery_id": str(uuid.uuid4()),
        "file_id": str(uuid.uuid4()),
        "job_id": str(uuid.uuid4()),
        "dub_id": str(uuid.uuid4()),
        "segment_id": "seg_0000",
        "item_id": str(uuid.uuid4()),
        "scim_token_id": str(uuid.uuid4()),
        "scim_user_id": str(uuid.uuid4()),
        "scim_group_id": str(uuid.uuid4()),
        **missing_studio_ids(),
        **missing_project_ids(),
    }


@pytest.fixture(scope="module")
async def world(server: Any) -> tuple[Workspace, Workspace]:
    async with aiohttp.ClientSession() as http:
        return await _workspace(server, http), await _workspace(server, http)


@dataclass(frozen=True)
class Answer:
    status: int
    body: str  # the text, with the ids asked for replaced by <id>

    @property
    def authorized(self) -> bool:
        return self.status not in (401, 403)


def _fill(template: Any, ids: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {k: _fill(v, ids) for k, v in template.items()}
    return template


async def _ask(
    http: aiohttp.ClientSession,
    server: Any,
    rule: Rule,
    headers: dict[str, str],
    ids: dict[str, str],
    method: str | None = None,
) -> Answer:
    values = {**SHARED_VALUES, **ids}
    path = rule.route.format(**values)
    inputs = _fill(INPUTS.get((rule.method, rule.route), {}), values)
    method = method or rule.method
    if rule.socket and method == "GET":
        try:
            ws = await http.ws_connect(server.ws_url + path, headers=headers, **inputs)
        except aiohttp.WSServerHandshakeError as refused:
            return Answer(refused.status, "")
        async with ws:
            if (rule.method, rule.route) not in SPEAKS_FIRST:
                return Answer(101, "")
            message = await ws.receive(timeout=SOCKET_FIRST_MESSAGE_S)
        first = message.data if message.type == aiohttp.WSMsgType.TEXT else str(message.type)
        for value in ids.values():
            first = first.replace(value, "<id>")
        return Answer(101, f"{first} / close {ws.close_code}")
    if method in ("POST", "PATCH") and "data" not in inputs:
        inputs.setdefault("json", {})
    async with http.request(method, server.url + path, headers=headers, **inputs) as r:
        text = await r.text(errors="replace")  # some answers are binary (a zip)
    for value in ids.values():
        text = text.replace(value, "<id>")
    return Answer(r.status, text)


def test_the_table_is_the_router(server) -> None:
    """Every mounted route has an entry and every entry a route (HEAD follows GET)."""
    mounted = {("GET" if m == "HEAD" else m, route) for m, route in mounted_routes(server.app)}
    assert mounted == set(policy.ROUTES), mounted ^ set(policy.ROUTES)


def test_public_routes_are_these(server) -> None:
    public = {rule.route for rule in RULES if rule.access == "public"}
    assert public == {
        "/healthz",
        "/readyz",
        "/metrics",
        "/widget.js",
        "/demo",
        "/openapi.json",
        "/docs",
        # The signature in the URL is the credential (rest/files.py).
        "/v1/files/signed/download",
        "/v1/files/signed/upload",
        # The receipt handed to the owner who asked is the credential (rest/compliance.py).
        "/v1/admin/data-deletions/{deletion_id}",
        # Stripe's signature (Stripe-Signature, the endpoint's secret) is the credential
        # (billing/stripe_events.py).
        "/v1/billing/stripe/webhook",
    }


def _takes_tenant_object(rule: Rule) -> bool:
    inputs = str(INPUTS.get((rule.method, rule.route), ""))
    return any(kind in policy.TENANT_OBJECTS for kind in rule.objects) or "{agent_id}" in inputs


async def _outcomes(
    server: Any,
    http: aiohttp.ClientSession,
    rule: Rule,
    caller: Caller,
    own: Workspace,
    other: Workspace,
) -> list[str]:
    """What is wrong with what ``caller`` gets on its own objects and on ``other``'s."""
    problems = []
    allowed = caller.allowed(rule)
    ids = own.ids
    if allowed and (rule.method, rule.route) in DESTRUCTIVE:
        ids = await _fresh(server, http, own, rule)
    if allowed and (rule.method, rule.route) in ENDS_SESSIONS and not caller.key:
        stand_in = await person(server, own.name, caller.role)
        caller = replace(caller, headers={"Authorization": f"Bearer {stand_in.token}"})
    mine = await _ask(http, server, rule, caller.headers, ids)
    tenant = _takes_tenant_object(rule)
    if not allowed:
        refusal = 401 if rule.access in ("user_session", "scim_token") else 403
        if mine.status != refusal:
            problems.append(f"{caller.name}: {mine.status}, not {refusal}")
    elif not mine.authorized or (tenant and mine.status == 404):
        problems.append(f"{caller.name}, own: {mine.status} {mine.body[:200]}")
    if not tenant:
        return problems
    theirs = await _ask(http, server, rule, caller.headers, other.ids)
    # A person acts in the workspace the path names, with their role there: in one they are
    # no member of they have none, and it is as missing as one that does not exist.
    if not allowed and not ("workspace" in rule.objects and not caller.key):
        if theirs.status != mine.status:
            problems.append(f"{caller.name}, other's: {theirs.status}, not {mine.status}")
        return problems
    missing = await _ask(http, server, rule, caller.headers, _missing_ids())
    if rule.socket:
        alike = theirs.status == missing.status
    else:
        alike = theirs.status == 404 and theirs == missing
    if not alike:
        problems.append(
            f"{caller.name}, other's: {theirs.status} {theirs.body[:200]}"
            f" vs missing: {missing.status} {missing.body[:200]}"
        )
    return problems


@pytest.mark.parametrize("rule", RULES, ids=[f"{r.method} {r.route}" for r in RULES])
async def test_matrix(server, http, world, rule: Rule) -> None:
    own, other = world
    if rule.access in ("public", "sign_in"):
        answer = await _ask(http, server, rule, {}, own.ids)
        assert answer.authorized and answer.status < 500, answer
        return
    problems: list[str] = []
    if rule.access in ("member", "operator"):
        answer = await _ask(http, server, rule, {}, own.ids)
        if answer.status != 401:
            problems.append(f"without a credential: {answer.status}, not 401")
    for caller in own.callers:
        problems += await _outcomes(server, http, rule, caller, own, other)
    assert not problems, "\n".join(problems)


async def test_head_follows_get(server, http, world) -> None:
    """A HEAD is judged by its GET's entry: a viewer's HEAD of a socket is refused like the
    upgrade, and a read is not."""
    own, _ = world
    viewer = next(c for c in own.callers if c.name == "viewer key")
    heads = sorted(route for method, route in mounted_routes(server.app) if method == "HEAD")
    wrong = []
    for route in heads:
        rule = policy.require_rule("GET", route)
        if rule.credential_free:
            continue
        answer = await _ask(http, server, rule, viewer.headers, own.ids, method="HEAD")
        if (answer.status == 403) == viewer.allowed(rule):
            wrong.append(f"HEAD {route}: {answer.status}")
    assert heads and not wrong, wrong
