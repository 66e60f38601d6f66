"""SAML 2.0 single sign-on end to end against pysaml2's own identity provider
(``tests/fakes/saml_idp.py``): the workspace's admin sets the IdP up, the browser leg starts at
``/login`` (an AuthnRequest), the IdP's signed Response is posted to ``/acs``, and the person
gets tokens and is a member with the default role. Forged, unsigned, expired, mis-addressed
and replayed responses are refused with a 4xx, and nothing is created for them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fakes.saml_idp import OTHER_AUDIENCE, SamlTestIdp, make_idp
from server.workspace_people import call, person, team
from voicestream.rest.resources import POOL
from voicestream.store.members import MemberRepository
from voicestream.store.users import UserRepository


@pytest.fixture(scope="module")
def idps(tmp_path_factory: pytest.TempPathFactory) -> tuple[SamlTestIdp, SamlTestIdp]:
    directory: Path = tmp_path_factory.mktemp("saml-idp")
    return make_idp(directory, "idp"), make_idp(directory, "impostor")


async def _set_up(
    server: Any, http: aiohttp.ClientSession, idp: SamlTestIdp, **settings: Any
) -> tuple[str, dict[str, Any]]:
    """A fresh workspace whose admin set ``idp`` up; (workspace id, the admin's answer)."""
    _, workspace_id, people = await team(server)
    body = {
        "idp_entity_id": idp.entity_id,
        "idp_sso_url": idp.sso_url,
        "idp_certificate": idp.certificate,
        "default_role": "editor",
        **settings,
    }
    status, sso = await call(
        http,
        server,
        "PUT",
        "/v1/admin/sso",
        body,
        token=people["admin"].token,
        workspace=workspace_id,
    )
    assert status == 200, sso
    return workspace_id, sso


async def _login_url(server: Any, http: aiohttp.ClientSession, workspace_id: str) -> str:
    path = f"/v1/auth/saml/{workspace_id}/login?redirect=false&relay_state=/studio"
    status, started = await call(http, server, "GET", path)
    assert status == 200, started
    return str(started["url"])


async def _metadata(server: Any, http: aiohttp.ClientSession, workspace_id: str) -> str:
    async with http.get(f"{server.url}/v1/auth/saml/{workspace_id}/metadata") as response:
        assert response.status == 200
        assert response.content_type == "application/samlmetadata+xml"
        return await response.text()


async def _post_acs(
    server: Any, http: aiohttp.ClientSession, workspace_id: str, saml_response: str
) -> tuple[int, Any]:
    form = {"SAMLResponse": saml_response, "RelayState": "/studio"}
    url = f"{server.url}/v1/auth/saml/{workspace_id}/acs"
    async with http.post(url, data=form) as response:
        return response.status, await response.json()


async def _membership(server: Any, email: str, workspace_id: str) -> str | None:
    users = UserRepository(server.app[POOL])
    account = await users.by_email(email)
    if account is None:
        return None
    for membership in await users.memberships(account.id):
        if str(membership.workspace_id) == workspace_id:
            return membership.role
    return "none"


async def test_saml_sign_in_provisions_a_member_and_issues_a_session(server, http, idps) -> None:
    idp, _ = idps
    workspace_id, sso = await _set_up(server, http, idp, allowed_domains=["corp.example"])
    assert sso["sp_acs_url"].endswith(f"/v1/auth/saml/{workspace_id}/acs")
    metadata = await _metadata(server, http, workspace_id)
    assert sso["sp_entity_id"] in metadata and sso["sp_acs_url"] in metadata
    login = await _login_url(server, http, workspace_id)
    assert login.startswith(idp.sso_url + "?SAMLRequest=")
    email = f"ada.{uuid.uuid4().hex[:8]}@corp.example"
    saml_response = await asyncio.to_thread(idp.respond, metadata, login, email)

    status, tokens = await _post_acs(server, http, workspace_id, saml_response)
    assert status == 200, tokens
    status, me = await call(http, server, "GET", "/v1/auth/me", token=tokens["access_token"])
    assert status == 200 and me["user"]["email"] == email, me
    assert await _membership(server, email, workspace_id) == "editor"
    status, _ = await call(
        http, server, "GET", "/v1/agents", token=tokens["access_token"], workspace=workspace_id
    )
    assert status == 200

    # The very same response again: a replay.
    status, error = await _post_acs(server, http, workspace_id, saml_response)
    assert status == 401 and error["error"]["code"] == "unauthorized", error
    # The second sign-in of a member keeps their role and makes no new account.
    login = await _login_url(server, http, workspace_id)
    again = await asyncio.to_thread(idp.respond, metadata, login, email.upper())
    status, tokens = await _post_acs(server, http, workspace_id, again)
    assert status == 200, tokens


@pytest.mark.parametrize(
    "variant",
    ["forged signature", "unsigned", "wrong audience", "expired", "unsolicited"],
)
async def test_bad_saml_responses_are_refused_and_create_nothing(
    server, http, idps, variant: str
) -> None:
    idp, impostor = idps
    workspace_id, _ = await _set_up(server, http, idp)
    metadata = await _metadata(server, http, workspace_id)
    login = await _login_url(server, http, workspace_id)
    email = f"eve.{uuid.uuid4().hex[:8]}@corp.example"
    # What the IdP does wrong, and what the refusal says about it.
    options, reason = {
        "forged signature": ({"signer": impostor}, "Failed to verify signature"),
        "unsigned": ({"signed": False}, "Neither the response nor the assertions are signed"),
        "wrong audience": ({"audience": OTHER_AUDIENCE}, "AudienceRestrictions"),
        "expired": ({"lifetime_minutes": -10}, "Condition not OK"),
        "unsolicited": ({"in_response_to": "id-" + uuid.uuid4().hex}, "answers no sign-in"),
    }[variant]
    bad = await asyncio.to_thread(idp.respond, metadata, login, email, **options)
    status, error = await _post_acs(server, http, workspace_id, bad)
    assert status == 401 and error["error"]["code"] == "unauthorized", (variant, error)
    assert reason in error["error"]["message"], error
    assert await _membership(server, email, workspace_id) is None  # no account, no member
    # The genuine answer to the same request still works: the refusal used nothing up.
    if variant != "unsolicited":
        good = await asyncio.to_thread(idp.respond, metadata, login, email)
        status, tokens = await _post_acs(server, http, workspace_id, good)
        assert status == 200, tokens


async def test_saml_settings_and_sign_in_refusals(server, http, idps) -> None:
    idp, _ = idps
    _, workspace_id, people = await team(server)
    admin, editor = people["admin"].token, people["editor"].token
    # No IdP yet: nothing to sign in with.
    status, error = await call(http, server, "GET", f"/v1/auth/saml/{workspace_id}/login")
    assert status == 404, error
    status, _ = await call(
        http, server, "GET", "/v1/admin/sso", token=admin, workspace=workspace_id
    )
    assert status == 404
    bad = {"idp_entity_id": idp.entity_id, "idp_sso_url": idp.sso_url, "idp_certificate": "nope"}
    status, error = await call(
        http, server, "PUT", "/v1/admin/sso", bad, token=admin, workspace=workspace_id
    )
    assert status == 422, error
    body = {"idp_metadata_xml": idp.metadata_xml(), "allowed_domains": ["corp.example"]}
    status, _ = await call(
        http, server, "PUT", "/v1/admin/sso", body, token=editor, workspace=workspace_id
    )
    assert status == 403
    status, sso = await call(
        http, server, "PUT", "/v1/admin/sso", body, token=admin, workspace=workspace_id
    )
    assert status == 200 and sso["idp_entity_id"] == idp.entity_id, sso
    assert sso["default_role"] == "viewer"

    # An address outside the allowed domains is refused, and not provisioned.
    metadata = await _metadata(server, http, workspace_id)
    login = await _login_url(server, http, workspace_id)
    email = f"mallory.{uuid.uuid4().hex[:8]}@elsewhere.example"
    answer = await asyncio.to_thread(idp.respond, metadata, login, email)
    status, error = await _post_acs(server, http, workspace_id, answer)
    assert status == 403, error
    assert await _membership(server, email, workspace_id) is None
    status, error = await _post_acs(server, http, workspace_id, "")
    assert status == 400, error
    status, error = await _post_acs(server, http, workspace_id, "bm90IHhtbA==")
    assert status == 401, error

    status, _ = await call(
        http, server, "DELETE", "/v1/admin/sso", token=admin, workspace=workspace_id
    )
    assert status == 204
    status, _ = await call(http, server, "GET", f"/v1/auth/saml/{workspace_id}/metadata")
    assert status == 404


async def test_an_idp_cannot_sign_in_accounts_beyond_its_workspace(server, http, idps) -> None:
    """A workspace's admins choose its IdP and what it asserts: it must not sign in someone's
    account that lives in other workspaces too, nor this workspace's owner."""
    idp, _ = idps
    workspace_id, _ = await _set_up(server, http, idp)
    outsider = await person(server)  # signed up elsewhere, with a workspace of their own
    metadata = await _metadata(server, http, workspace_id)
    for email in (outsider.user.email, await _owner_email(server, workspace_id)):
        login = await _login_url(server, http, workspace_id)
        answer = await asyncio.to_thread(idp.respond, metadata, login, email)
        status, error = await _post_acs(server, http, workspace_id, answer)
        assert status == 403 and error["error"]["details"]["reason"] == "account_not_managed"
    assert await _membership(server, outsider.user.email, workspace_id) == "none"


async def _owner_email(server: Any, workspace_id: str) -> str:
    members = await MemberRepository(server.app[POOL]).list(uuid.UUID(workspace_id))
    return next(m.email for m in members if m.role == "owner")
