"""Who may do what: one entry per route, the one rule every route goes through.

Pure, and below every transport. ``ROUTES`` has an entry for every (method, route) the server
mounts — native, ElevenLabs-, OpenAI-compatible, telephony and sockets alike — and the server
refuses to start with a route that has none (``server/route_policy.py``). The auth middleware
looks the request's route up before the handler runs (so before any WebSocket upgrade): the
entry says which credential it takes (``access``), and ``check`` then says whether the
principal's role and scopes allow it. ElevenLabs' sockets, which also take a key in the query
or the first message, ask ``check`` for those keys (``elevenlabs_sockets.SocketAuth``).

An entry names:

- ``access``: ``public`` (no credential: health, metrics, the widget, the API documents);
  ``sign_in`` (how a caller gets credentials: ``/v1/auth/…``); ``user_session`` (a signed-in
  person's own routes that need no membership, such as their workspaces and MFA: the handler
  checks the access token itself, and an API key is refused there); ``key_optional`` (a browser
  or a carrier cannot hold a key: a ticket, a public agent or a webhook signature is checked
  by the handler instead, and a key that is presented is checked here); ``member`` (a key, or a
  user's session in one of their workspaces); ``operator`` (the server operator's key alone,
  ``store/operator_keys.py``: the cross-workspace views, and no other route lets that key in);
  ``scim_token`` (an identity provider's SCIM bearer token for one workspace, checked by the
  SCIM sub-app, ``rest/scim.py``, which answers SCIM errors; keys and sessions are refused).
- ``scope``: the family a limited key needs (``tts``, ``stt``, ``convai``, ``jobs``, ``admin``);
  none for the routes that only describe the server (voices, models, the account).
- ``role``: the least role that may do it. A viewer reads: GET of what is stored, and the
  ElevenLabs history download, a POST that only reads. Everything else acts and needs an
  editor: creating, changing or deleting, synthesizing, transcribing, opening a socket (every
  socket acts: it synthesizes, transcribes or holds a conversation) and minting credentials
  (signed URLs, the answer webhooks' call tickets). The audit log, API keys and changes to a
  workspace's members are for admins and owners, reads included. Finer rules (an editor's
  writes, what an admin may not do to an owner) stay with the resource (``rest/agents.py``,
  ``identity/members.py``).
- ``objects``: what the path's parameters name. Those of a workspace (``TENANT_OBJECTS``) are
  looked up in the caller's workspace only: another workspace's is a 404 like a missing one.

HEAD follows GET. ``WS`` in the table is a GET that upgrades to a WebSocket.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeVar, get_args

from ..errors import Forbidden
from ..store.keys import ROLES, SCOPES, Principal, Role, Scope, role_rank

__all__ = [
    "ROUTES",
    "TENANT_OBJECTS",
    "Access",
    "ObjectKind",
    "Rule",
    "check",
    "missing_rules",
    "require_rule",
    "rule_for",
    "scope_of",
]

Access = Literal[
    "public", "sign_in", "user_session", "key_optional", "member", "operator", "scim_token"
]
ACCESSES: Final[tuple[Access, ...]] = get_args(Access)
# Objects that belong to one workspace; voices, models and sign-in providers are the server's.
TenantObject = Literal[
    "agent",
    "document",
    "conversation",
    "history_item",
    "api_key",
    "workspace",
    "member",
    "invitation",
    "webhook",
    "webhook_delivery",
    "job",
    "file",
    "studio_project",
    "studio_chapter",
    "studio_snapshot",
    "dub",
    "dub_segment",
    "project",
    "project_version",
    "project_track",
    "project_clip",
    "scim_token",
    "scim_user",
    "scim_group",
    "moderation_item",
    "data_export",
]
ObjectKind = Literal[
    TenantObject,
    "voice",
    "model",
    "provider",
    "language",
    "transcript_format",
    "any_workspace",
    "scim_schema",
    "data_deletion",  # a tombstone outlives its workspace: read with its receipt, by anyone
]
TENANT_OBJECTS: Final[frozenset[ObjectKind]] = frozenset(get_args(TenantObject))
_PARAMETER_OBJECTS: Final[Mapping[str, ObjectKind]] = {
    "agent_id": "agent",
    "document_id": "document",
    "conversation_id": "conversation",
    "history_item_id": "history_item",
    "key_id": "api_key",
    "workspace_id": "workspace",
    "user_id": "member",
    "invitation_id": "invitation",
    "webhook_id": "webhook",
    "delivery_id": "webhook_delivery",
    "job_id": "job",
    "file_id": "file",
    "studio_project_id": "studio_project",
    "chapter_id": "studio_chapter",
    "project_snapshot_id": "studio_snapshot",
    "chapter_snapshot_id": "studio_snapshot",
    "dub_id": "dub",
    "segment_id": "dub_segment",
    "language": "language",
    "format": "transcript_format",
    "project_id": "project",
    "version": "project_version",
    "track_id": "project_track",
    "clip_id": "project_clip",
    "item_id": "moderation_item",
    "export_id": "data_export",
    "deletion_id": "data_deletion",
    "voice_id": "voice",
    "model": "model",
    "provider": "provider",
    "scim_token_id": "scim_token",
    "scim_user_id": "scim_user",
    "scim_group_id": "scim_group",
    "resource_type": "scim_schema",
    "schema_id": "scim_schema",
}
# The operator reads every workspace: there a workspace id names any of them, not the caller's.
_OPERATOR_OBJECTS: Final[Mapping[str, ObjectKind]] = {"workspace_id": "any_workspace"}


@dataclass(frozen=True, slots=True)
class Rule:
    method: str  # GET for a socket; HEAD is never listed (it follows GET)
    route: str  # the route's canonical path, as aiohttp names it: /v1/agents/{agent_id}
    access: Access
    scope: Scope | None = None
    role: Role = "viewer"
    socket: bool = False
    objects: tuple[ObjectKind, ...] = ()

    @property
    def credential_free(self) -> bool:
        """Whether the middleware lets it through without a key or a member's session (a
        SCIM route checks its own token)."""
        return self.access in ("public", "sign_in", "user_session", "scim_token")

    @property
    def acts(self) -> bool:
        return self.role != "viewer"


# method  route                                                         access        scope  role
_TABLE: Final = """
GET     /healthz                                                        public
GET     /readyz                                                         public
GET     /metrics                                                        public
GET     /widget.js                                                      public
GET     /demo                                                           public
GET     /openapi.json                                                   public
GET     /docs                                                           public

GET     /v1/voices                                                      member        -      viewer
GET     /v1/models                                                      member        -      viewer
GET     /v1/usage                                                       member        admin  viewer
POST    /v1/tts                                                         member        tts    editor
WS      /v1/tts/stream                                                  member        tts    editor
POST    /v1/stt                                                         member        stt    editor
WS      /v1/stt/stream                                                  member        stt    editor

GET     /v1/agents                                                      member        convai viewer
POST    /v1/agents                                                      member        convai editor
GET     /v1/agents/{agent_id}                                           member        convai viewer
PATCH   /v1/agents/{agent_id}                                           member        convai editor
DELETE  /v1/agents/{agent_id}                                           member        convai editor
GET     /v1/agents/{agent_id}/documents                                 member        convai viewer
POST    /v1/agents/{agent_id}/documents                                 member        convai editor
DELETE  /v1/agents/{agent_id}/documents/{document_id}                   member        convai editor
GET     /v1/convai/sessions                                             member        convai viewer
GET     /v1/convai/sessions/{conversation_id}                           member        convai viewer
POST    /v1/convai/tickets                                              member        convai editor
WS      /v1/convai/stream                                               key_optional  convai editor
POST    /v1/convai/webrtc/offer                                         key_optional  convai editor
PATCH   /v1/convai/webrtc/offer                                         key_optional  convai editor
OPTIONS /v1/convai/webrtc/offer                                         key_optional  convai viewer

GET     /v1/audit-logs                                                  member        admin  admin
GET     /v1/api-keys                                                    member        admin  admin
POST    /v1/api-keys                                                    member        admin  admin
DELETE  /v1/api-keys/{key_id}                                           member        admin  admin
GET     /v1/jobs                                                        member        jobs   viewer
POST    /v1/jobs                                                        member        jobs   editor
GET     /v1/jobs/{job_id}                                               member        jobs   viewer
POST    /v1/jobs/{job_id}/cancel                                        member        jobs   editor
POST    /v1/files                                                       member        jobs   editor
POST    /v1/files/uploads                                               member        jobs   editor
GET     /v1/files/{file_id}                                             member        jobs   viewer
DELETE  /v1/files/{file_id}                                             member        jobs   editor
GET     /v1/files/signed/download                                       public
PUT     /v1/files/signed/upload                                         public
GET     /v1/webhooks                                                    member        jobs   admin
POST    /v1/webhooks                                                    member        jobs   admin
GET     /v1/webhooks/{webhook_id}                                       member        jobs   admin
PATCH   /v1/webhooks/{webhook_id}                                       member        jobs   admin
DELETE  /v1/webhooks/{webhook_id}                                       member        jobs   admin
GET     /v1/webhooks/{webhook_id}/deliveries                            member        jobs   admin
GET     /v1/webhooks/{webhook_id}/deliveries/{delivery_id}              member        jobs   admin
POST    /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver    member        jobs   admin
POST    /v1/webhooks/{webhook_id}/test                                  member        jobs   admin
GET     /v1/credits                                                     member        jobs   viewer
GET     /v1/admin/billing                                               member        admin  admin
GET     /v1/admin/billing/plans                                         member        admin  admin
POST    /v1/admin/billing/subscription                                  member        admin  admin
PATCH   /v1/admin/billing/subscription                                  member        admin  admin
DELETE  /v1/admin/billing/subscription                                  member        admin  admin
GET     /v1/admin/billing/invoices                                      member        admin  admin
GET     /v1/admin/billing/payment-methods                               member        admin  admin
POST    /v1/admin/billing/usage-reports                                 member        admin  admin
GET     /v1/admin/billing/reconciliation                                member        admin  admin
POST    /v1/admin/billing/reconciliation                                member        admin  admin
POST    /v1/billing/stripe/webhook                                      public
GET     /v1/dubbing                                                     member        jobs   viewer
POST    /v1/dubbing                                                     member        jobs   editor
GET     /v1/dubbing/{dub_id}                                            member        jobs   viewer
DELETE  /v1/dubbing/{dub_id}                                            member        jobs   editor
GET     /v1/dubbing/{dub_id}/segments                                   member        jobs   viewer
PATCH   /v1/dubbing/{dub_id}/segments/{segment_id}                      member        jobs   editor
POST    /v1/dubbing/{dub_id}/render                                     member        jobs   editor
GET     /v1/dubbing/{dub_id}/audio/{language}                           member        jobs   viewer
GET     /v1/dubbing/{dub_id}/transcript/{language}                      member        jobs   viewer
POST    /v1/dubbing/{dub_id}/subtitles/{language}                       member        jobs   editor
GET     /v1/projects                                                    member        jobs   viewer
POST    /v1/projects                                                    member        jobs   editor
GET     /v1/projects/{project_id}                                       member        jobs   viewer
PUT     /v1/projects/{project_id}                                       member        jobs   editor
PATCH   /v1/projects/{project_id}                                       member        jobs   editor
DELETE  /v1/projects/{project_id}                                       member        jobs   editor
POST    /v1/projects/{project_id}/tracks/{track_id}/clips               member        jobs   editor
PATCH   /v1/projects/{project_id}/clips/{clip_id}                       member        jobs   editor
DELETE  /v1/projects/{project_id}/clips/{clip_id}                       member        jobs   editor
GET     /v1/projects/{project_id}/versions                              member        jobs   viewer
GET     /v1/projects/{project_id}/versions/{version}                    member        jobs   viewer
POST    /v1/projects/{project_id}/versions/{version}/restore            member        jobs   editor
GET     /v1/projects/{project_id}/diff                                  member        jobs   viewer
POST    /v1/projects/{project_id}/subtitles                             member        jobs   editor
POST    /v1/projects/{project_id}/exports                               member        jobs   editor
GET     /v1/workspaces                                                  user_session
POST    /v1/workspaces                                                  user_session
POST    /v1/invitations/accept                                          user_session
GET     /v1/workspaces/{workspace_id}                                   member        admin  admin
PATCH   /v1/workspaces/{workspace_id}                                   member        admin  admin
GET     /v1/workspaces/{workspace_id}/members                           member        admin  viewer
POST    /v1/workspaces/{workspace_id}/invitations                       member        admin  admin
GET     /v1/workspaces/{workspace_id}/invitations                       member        admin  admin
DELETE  /v1/workspaces/{workspace_id}/invitations/{invitation_id}       member        admin  admin
PATCH   /v1/workspaces/{workspace_id}/members/{user_id}                 member        admin  admin
DELETE  /v1/workspaces/{workspace_id}/members/{user_id}                 member        admin  admin
GET     /v1/workspaces/{workspace_id}/translation                       member        admin  viewer

GET     /v1/operator/workspaces                                         operator
GET     /v1/operator/workspaces/{workspace_id}                          operator
GET     /v1/operator/usage                                              operator
GET     /v1/admin/seats                                                 member        admin  admin
POST    /v1/admin/seats                                                 member        admin  admin
PATCH   /v1/admin/seats/{user_id}                                       member        admin  admin
DELETE  /v1/admin/seats/{user_id}                                       member        admin  admin
GET     /v1/admin/usage                                                 member        admin  admin
GET     /v1/admin/audit-logs/export                                     member        admin  admin
GET     /v1/admin/settings                                              member        admin  admin
PATCH   /v1/admin/settings                                              member        admin  admin
GET     /v1/admin/moderation                                            member        admin  admin
GET     /v1/admin/moderation/policy                                     member        admin  admin
PUT     /v1/admin/moderation/policy                                     member        admin  admin
POST    /v1/admin/moderation/{item_id}/approve                          member        admin  admin
POST    /v1/admin/moderation/{item_id}/reject                           member        admin  admin
PUT     /v1/workspaces/{workspace_id}/translation                       member        admin  admin
DELETE  /v1/workspaces/{workspace_id}/translation                       member        admin  admin

GET     /v1/admin/retention                                             member        admin  admin
PUT     /v1/admin/retention                                             member        admin  admin
POST    /v1/admin/retention/runs                                        member        admin  admin
POST    /v1/admin/data-exports                                          member        admin  admin
GET     /v1/admin/data-exports/{export_id}                              member        admin  admin
POST    /v1/admin/data-deletions                                        member        admin  owner
GET     /v1/admin/data-deletions/{deletion_id}                          public
GET     /v1/admin/compliance                                            member        admin  admin
PUT     /v1/admin/compliance                                            member        admin  admin
GET     /v1/admin/sso                                                   member        admin  admin
PUT     /v1/admin/sso                                                   member        admin  admin
DELETE  /v1/admin/sso                                                   member        admin  admin
GET     /v1/admin/scim/tokens                                           member        admin  admin
POST    /v1/admin/scim/tokens                                           member        admin  admin
DELETE  /v1/admin/scim/tokens/{scim_token_id}                           member        admin  admin
GET     /v1/admin/scim/settings                                         member        admin  admin
PUT     /v1/admin/scim/settings                                         member        admin  admin
GET     /scim/v2/ServiceProviderConfig                                  scim_token
GET     /scim/v2/ResourceTypes                                          scim_token
GET     /scim/v2/ResourceTypes/{resource_type}                          scim_token
GET     /scim/v2/Schemas                                                scim_token
GET     /scim/v2/Schemas/{schema_id}                                    scim_token
POST    /scim/v2/.search                                                scim_token
GET     /scim/v2/Users                                                  scim_token
POST    /scim/v2/Users                                                  scim_token
POST    /scim/v2/Users/.search                                          scim_token
GET     /scim/v2/Users/{scim_user_id}                                   scim_token
PUT     /scim/v2/Users/{scim_user_id}                                   scim_token
PATCH   /scim/v2/Users/{scim_user_id}                                   scim_token
DELETE  /scim/v2/Users/{scim_user_id}                                   scim_token
GET     /scim/v2/Groups                                                 scim_token
POST    /scim/v2/Groups                                                 scim_token
POST    /scim/v2/Groups/.search                                         scim_token
GET     /scim/v2/Groups/{scim_group_id}                                 scim_token
PUT     /scim/v2/Groups/{scim_group_id}                                 scim_token
PATCH   /scim/v2/Groups/{scim_group_id}                                 scim_token
DELETE  /scim/v2/Groups/{scim_group_id}                                 scim_token

POST    /v1/auth/signup                                                 sign_in
POST    /v1/auth/verify-email                                           sign_in
POST    /v1/auth/login                                                  sign_in
POST    /v1/auth/refresh                                                sign_in
POST    /v1/auth/logout                                                 sign_in
POST    /v1/auth/logout-everywhere                                      user_session
POST    /v1/auth/magic-link                                             sign_in
POST    /v1/auth/magic-link/redeem                                      sign_in
POST    /v1/auth/password-reset                                         sign_in
POST    /v1/auth/password-reset/confirm                                 sign_in
POST    /v1/auth/mfa/verify                                             sign_in
POST    /v1/auth/passkeys/login/options                                 sign_in
POST    /v1/auth/passkeys/login/verify                                  sign_in
GET     /v1/auth/oauth/providers                                        sign_in
GET     /v1/auth/oauth/{provider}/start                                 sign_in
GET     /v1/auth/oauth/{provider}/callback                              sign_in
POST    /v1/auth/oauth/{provider}/callback                              sign_in
GET     /v1/auth/saml/{workspace_id}/metadata                           sign_in
GET     /v1/auth/saml/{workspace_id}/login                              sign_in
POST    /v1/auth/saml/{workspace_id}/acs                                sign_in
GET     /v1/auth/me                                                     user_session
GET     /v1/auth/mfa                                                    user_session
POST    /v1/auth/mfa/totp                                               user_session
POST    /v1/auth/mfa/totp/confirm                                       user_session
DELETE  /v1/auth/mfa/totp                                               user_session
POST    /v1/auth/passkeys/register/options                              user_session
POST    /v1/auth/passkeys/register/verify                               user_session

POST    /openai/v1/audio/speech                                         member        tts    editor
POST    /openai/v1/audio/transcriptions                                 member        stt    editor
POST    /openai/v1/audio/translations                                   member        stt    editor
GET     /openai/v1/models                                               member        -      viewer
GET     /openai/v1/models/{model}                                       member        -      viewer
WS      /openai/v1/realtime                                             member        convai editor

POST    /elevenlabs/v1/text-to-speech/{voice_id}                        member        tts    editor
POST    /elevenlabs/v1/text-to-speech/{voice_id}/stream                 member        tts    editor
POST    /elevenlabs/v1/text-to-speech/{voice_id}/with-timestamps        member        tts    editor
POST    /elevenlabs/v1/text-to-speech/{voice_id}/stream/with-timestamps member        tts    editor
WS      /elevenlabs/v1/text-to-speech/{voice_id}/stream-input           key_optional  tts    editor
WS      /elevenlabs/v1/text-to-speech/{voice_id}/multi-stream-input     key_optional  tts    editor
POST    /elevenlabs/v1/text-to-dialogue                                 member        tts    editor
POST    /elevenlabs/v1/text-to-dialogue/stream                          member        tts    editor
POST    /elevenlabs/v1/text-to-dialogue/with-timestamps                 member        tts    editor
POST    /elevenlabs/v1/text-to-dialogue/stream/with-timestamps          member        tts    editor
GET     /elevenlabs/v1/history                                          member        tts    viewer
POST    /elevenlabs/v1/history/download                                 member        tts    viewer
GET     /elevenlabs/v1/history/{history_item_id}                        member        tts    viewer
GET     /elevenlabs/v1/history/{history_item_id}/audio                  member        tts    viewer
DELETE  /elevenlabs/v1/history/{history_item_id}                        member        tts    editor
POST    /elevenlabs/v1/speech-to-text                                   member        stt    editor
GET     /elevenlabs/v1/dubbing                                          member        jobs   viewer
POST    /elevenlabs/v1/dubbing                                          member        jobs   editor
GET     /elevenlabs/v1/dubbing/{dub_id}                                 member        jobs   viewer
DELETE  /elevenlabs/v1/dubbing/{dub_id}                                 member        jobs   editor
GET     /elevenlabs/v1/dubbing/{dub_id}/audio/{language}                member        jobs   viewer
GET     /elevenlabs/v1/dubbing/{dub_id}/transcript/{language}           member        jobs   viewer
GET     /elevenlabs/v1/dubbing/{dub_id}/transcripts/{language}/format/{format} member jobs viewer
GET     /elevenlabs/v1/dubbing/resource/{dub_id}                        member        jobs   viewer
PATCH   /elevenlabs/v1/dubbing/resource/{dub_id}/segment/{segment_id}/{language} member jobs editor
POST    /elevenlabs/v1/dubbing/resource/{dub_id}/dub                    member        jobs   editor
POST    /elevenlabs/v1/dubbing/resource/{dub_id}/render/{language}      member        jobs   editor
WS      /elevenlabs/v1/speech-to-text/realtime                          key_optional  stt    editor
GET     /elevenlabs/v1/voices                                           member        -      viewer
GET     /elevenlabs/v1/voices/settings/default                          member        -      viewer
GET     /elevenlabs/v1/voices/{voice_id}                                member        -      viewer
GET     /elevenlabs/v1/voices/{voice_id}/settings                       member        -      viewer
GET     /elevenlabs/v2/voices                                           member        -      viewer
GET     /elevenlabs/v1/models                                           member        -      viewer
GET     /elevenlabs/v1/user                                             member        -      viewer
GET     /elevenlabs/v1/user/subscription                                member        -      viewer
WS      /elevenlabs/v1/convai/conversation                              key_optional  convai editor
GET     /elevenlabs/v1/convai/conversation/get-signed-url               member        convai editor
GET     /elevenlabs/v1/convai/conversation/get_signed_url               member        convai editor

WS      /v1/telephony/twilio                                            key_optional  convai editor
POST    /v1/telephony/twilio/voice                                      key_optional  convai editor
WS      /v1/telephony/telnyx                                            key_optional  convai editor
POST    /v1/telephony/telnyx/voice                                      member        convai editor
WS      /v1/telephony/vonage                                            key_optional  convai editor
GET     /v1/telephony/vonage/answer                                     member        convai editor
POST    /v1/telephony/vonage/answer                                     member        convai editor
"""
# Notes on the table, where the reason is not the general rule:
# - the signed file URLs (/v1/files/signed/…) are public: their HMAC signature, minted by a
#   member's GET or POST, is the credential, checked by the handler (rest/files.py);
# - so is a data deletion's tombstone: its receipt, handed to the owner who asked, is the
#   credential, since every key and session of the workspace dies with it (rest/compliance.py);
# - so is Stripe's webhook: its Stripe-Signature under the endpoint's secret is the credential
#   (rest/billing.py);
# - the signed-URL GETs and the Vonage answer GET act: they mint credentials a conversation
#   can be opened with; the history download is a POST that only reads;
# - Twilio's voice webhook may prove itself with X-Twilio-Signature instead of a key, and the
#   sockets a browser or a carrier opens take a ticket, a public agent or the key in the
#   query or the first message (ElevenLabs' TTS and Scribe sockets);
# - webhooks are the workspace's administration, reads included (where its events go, and
#   their log), under the ``jobs`` scope whose events they carry;
# - /v1/usage and the member list are the workspace's administration (the ``admin`` scope)
#   but readable by any member (rest/usage.py narrows what a member sees).
# - a workspace's dubbing translator is its administration too (where its dialogue is sent,
#   and a key), but any member may read it, without the key (rest/workspace_translation.py).

# ElevenLabs Studio (transports/elevenlabs_studio.py): its routes are long, so ``$P`` stands
# for the project's own path. A snapshot's stream and archive are POSTs (as the SDK sends them)
# that only read.
_STUDIO_PROJECT: Final = "/elevenlabs/v1/studio/projects/{studio_project_id}"
_STUDIO_TABLE: Final = """
GET     /elevenlabs/v1/studio/projects                                  member  jobs  viewer
POST    /elevenlabs/v1/studio/projects                                  member  jobs  editor
GET     $P                                                              member  jobs  viewer
POST    $P                                                              member  jobs  editor
DELETE  $P                                                              member  jobs  editor
POST    $P/content                                                      member  jobs  editor
POST    $P/convert                                                      member  jobs  editor
GET     $P/snapshots                                                    member  jobs  viewer
GET     $P/snapshots/{project_snapshot_id}                              member  jobs  viewer
POST    $P/snapshots/{project_snapshot_id}/stream                       member  jobs  viewer
POST    $P/snapshots/{project_snapshot_id}/archive                      member  jobs  viewer
GET     $P/chapters                                                     member  jobs  viewer
POST    $P/chapters                                                     member  jobs  editor
GET     $P/chapters/{chapter_id}                                        member  jobs  viewer
POST    $P/chapters/{chapter_id}                                        member  jobs  editor
DELETE  $P/chapters/{chapter_id}                                        member  jobs  editor
POST    $P/chapters/{chapter_id}/convert                                member  jobs  editor
GET     $P/chapters/{chapter_id}/snapshots                              member  jobs  viewer
GET     $P/chapters/{chapter_id}/snapshots/{chapter_snapshot_id}        member  jobs  viewer
POST    $P/chapters/{chapter_id}/snapshots/{chapter_snapshot_id}/stream member  jobs  viewer
""".replace("$P", _STUDIO_PROJECT)

_PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # HEAD follows GET
_T = TypeVar("_T", bound=str)


def _pick(options: tuple[_T, ...], text: str, line: str) -> _T:
    for option in options:
        if option == text:
            return option
    raise ValueError(f"policy table: {text!r} is not one of {options} in {line!r}")


def _parse(table: str) -> dict[tuple[str, str], Rule]:
    rules: dict[tuple[str, str], Rule] = {}
    for line in table.splitlines():
        if not line.strip():
            continue
        verb, route, access_text, *rest = line.split()
        access = _pick(ACCESSES, access_text, line)
        scope: Scope | None = None
        role: Role = "viewer"
        if len(rest) == 2:
            if rest[0] != "-":
                scope = _pick(SCOPES, rest[0], line)
            role = _pick(ROLES, rest[1], line)
        elif rest or access in ("member", "key_optional"):
            raise ValueError(f"policy table: {line!r} needs a scope and a role, only those")
        method = "GET" if verb == "WS" else _pick(_METHODS, verb, line)
        if (method, route) in rules:
            raise ValueError(f"policy table: {method} {route} is listed twice")
        kinds = {**_PARAMETER_OBJECTS, **_OPERATOR_OBJECTS} if access == "operator" else None
        objects = tuple((kinds or _PARAMETER_OBJECTS)[n] for n in _PARAMETER.findall(route))
        rules[method, route] = Rule(method, route, access, scope, role, verb == "WS", objects)
    return rules


ROUTES: Final[Mapping[tuple[str, str], Rule]] = _parse(_TABLE + _STUDIO_TABLE)


def rule_for(method: str, route: str) -> Rule | None:
    """The entry of ``method`` on the canonical ``route`` (HEAD: GET's); None when unlisted."""
    return ROUTES.get(("GET" if method == "HEAD" else method, route))


def require_rule(method: str, route: str) -> Rule:
    """The entry of ``method`` on ``route``; raises LookupError when it has none (the server
    does not start with such a route, so a mounted route always has one)."""
    if (rule := rule_for(method, route)) is None:
        raise LookupError(f"{method} {route} has no entry in the policy table")
    return rule


def missing_rules(routes: Iterable[tuple[str, str]]) -> list[str]:
    """``METHOD route`` of every (method, canonical route) without an entry, sorted."""
    return sorted({f"{m} {r}" for m, r in routes if rule_for(m, r) is None})


def scope_of(route: str) -> Scope | None:
    """The scope a key needs for ``route``: None for the routes any key may read, ``admin``
    for the workspace's administration and for any route not listed."""
    for rule in ROUTES.values():
        if rule.route == route:
            return rule.scope
    return "admin"


def check(principal: Principal, rule: Rule) -> None:
    """Raises ``Forbidden`` when ``principal`` may not make a request ``rule`` governs."""
    route = rule.route
    # The operator's key and the workspaces' credentials never cross: the operator reads
    # across workspaces and acts in none; no workspace role, owner included, reads across.
    if principal.operator and rule.access != "operator":
        raise Forbidden(
            f"an operator key reads the server's cross-workspace views (/v1/operator/...) "
            f"only; {rule.method} {route} needs a workspace's key or member",
            details={"role": "operator"},
        )
    if rule.access == "operator" and not principal.operator:
        raise Forbidden(
            f"{route} is the server operator's: it needs an operator key (minted with "
            "`voicestream admin keys create`); a workspace's keys and members never see "
            "other workspaces",
            details={"role": principal.role, "required": "operator"},
        )
    if rule.scope is not None and not principal.has_scope(rule.scope):
        raise Forbidden(
            f"this API key is not allowed the {rule.scope!r} scope that {route} needs",
            details={"scope": rule.scope, "scopes": sorted(principal.scopes or ())},
        )
    if principal.has_role(rule.role):
        return
    details = {"role": principal.role, "required": rule.role}
    if principal.role == "viewer" and role_rank(rule.role) == role_rank("editor"):
        what = "open a socket" if rule.socket else f"{rule.method} {route}"
        who = "viewer key" if principal.key_id is not None else "viewer"
        raise Forbidden(
            f"a {who} is read-only and may not {what}; it needs the editor role or above",
            details=details,
        )
    raise Forbidden(
        f"{route} needs the {rule.role} role or above; this role is {principal.role}",
        details=details,
    )
