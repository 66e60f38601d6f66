"""What the OpenAPI document says about each mounted route (``rest/openapi.py`` builds it).

One entry per (method, path) the app mounts; a route mounted without one fails
``tests/rest/test_openapi.py``. Where a handler validates with a pydantic model, the entry
names that model, so the document shows exactly what the handler accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..protocols.vonage_ncco import Ncco
from ..rest.agents import (
    AgentCreateBody,
    AgentDetail,
    AgentList,
    AgentModel,
    AgentPatchBody,
    DocumentBody,
    DocumentList,
    DocumentModel,
)
from ..rest.api_keys import ApiKeyList, ApiKeyModel, CreateApiKeyBody, CreatedApiKey
from ..rest.audit_logs import AuditLogPage, AuditLogQuery
from ..rest.auth import (
    AcceptedResponse,
    EmailBody,
    LoginBody,
    MeResponse,
    MfaRequiredResponse,
    RefreshBody,
    ResetConfirmBody,
    SignUpBody,
    SignUpResponse,
    TokenBody,
    TokenResponse,
)
from ..rest.conversations import ConversationModel, SessionList
from ..rest.credits import CreditsQuery, CreditsResponse
from ..rest.files import FileModel, UploadBody, UploadModel
from ..rest.jobs import JobListQuery, JobModel, JobPageModel, JobSubmitBody
from ..rest.mfa import (
    ConfirmBody,
    DisableBody,
    MfaStatusResponse,
    RecoveryCodesResponse,
    TotpEnrolmentResponse,
    VerifyBody,
)
from ..rest.model_catalog import ModelList
from ..rest.oauth import OAuthProvidersResponse, OAuthStartQuery, OAuthStartResponse
from ..rest.openapi import (
    AUDIO_BODY,
    BINARY,
    MULTIPART,
    NO_CONTENT,
    STRING,
    Op,
    Resp,
    audio,
    ok,
    websocket,
)
from ..rest.passkeys import CredentialBody, OptionsResponse, PasskeyModel
from ..rest.usage import UsagePage, UsageQuery
from ..rest.voices import VoiceList
from ..rest.webhooks import (
    CreatedWebhook,
    CreateWebhookBody,
    DeliveryDetailModel,
    DeliveryModel,
    DeliveryPage,
    DeliveryQuery,
    WebhookList,
    WebhookModel,
    WebhookPatchBody,
)
from ..rest.workspace_translation import TranslationBody, TranslationModel
from ..rest.workspaces import (
    AcceptBody,
    AcceptedInvitation,
    CreateWorkspaceBody,
    InvitationModel,
    InvitationPage,
    InvitationQuery,
    InviteBody,
    MemberChangeBody,
    MemberList,
    SeatModel,
    WorkspaceList,
    WorkspaceModel,
    WorkspaceSettingsBody,
    WorkspaceSettingsModel,
)
from ..transports.http_stt import Transcript
from ..transports.http_tts import TTSRequest
from ..transports.tickets import TicketRequest, TicketResponse
from ..transports.webrtc import (
    CandidatesAccepted,
    CandidatesRequest,
    OfferRequest,
    WebRTCAnswer,
)
from .health import Liveness, Readiness
from .openapi_admin_routes import ADMIN_OPERATIONS
from .openapi_billing_routes import BILLING_OPERATIONS
from .openapi_compat_routes import COMPAT_OPERATIONS
from .openapi_compliance_routes import COMPLIANCE_OPERATIONS
from .openapi_dubbing_routes import DUBBING_OPERATIONS
from .openapi_moderation_routes import MODERATION_OPERATIONS
from .openapi_project_routes import PROJECT_OPERATIONS
from .openapi_sso_routes import SSO_OPERATIONS

__all__ = ["OPERATIONS"]

# Tokens, or (multi-factor on) a challenge to answer at /v1/auth/mfa/verify.
_SIGNED_IN: Final = {
    200: Resp(
        "Signed in, or a second factor is needed.", any_of=(TokenResponse, MfaRequiredResponse)
    )
}


_NATIVE_TTS_WS: Final = (
    "Send text messages as JSON, receive audio as binary frames as soon as each clause is "
    "synthesized; query `voice` and `format` choose them. Errors arrive as a JSON `error` "
    "event, then a close code that says why."
)
_NATIVE_STT_WS: Final = (
    "Send raw PCM as binary frames (query `format`, default `pcm_16000`), receive partial "
    "and final transcripts as JSON events; an `end` message flushes the last one."
)
_CONVAI_WS: Final = (
    "A conversation with an agent: microphone audio in, agent speech and transcripts out, "
    "with barge-in. Authenticated by a key, a ticket (POST /v1/convai/tickets) or a public "
    "agent's id."
)
_CARRIER_WS: Final = "The carrier's media-stream protocol (its own JSON events, base64 audio)."
# What the server signs into a file URL; used exactly as given.
_SIGNED_QUERY: Final = {
    "key": STRING,
    "expires": STRING,
    "signature": STRING,
    "filename": STRING,
    "type": STRING,
}
OPERATIONS: Final[Mapping[tuple[str, str], Op]] = {
    # --- service -------------------------------------------------------------------------
    ("GET", "/healthz"): Op(
        "Liveness: the process answers", "service", auth="public", responses=ok(Liveness)
    ),
    ("GET", "/readyz"): Op(
        "Readiness: models loaded, database and Redis reachable",
        "service",
        auth="public",
        responses={
            200: Resp("Ready.", model=Readiness),
            503: Resp(
                "Not ready yet; the body names what is missing.",
                model=Readiness,
                headers={"Retry-After": "Seconds until asking again is worth it."},
            ),
        },
    ),
    ("GET", "/metrics"): Op(
        "Prometheus metrics",
        "service",
        auth="public",
        responses={200: Resp("Prometheus text format.", media="text/plain", schema=STRING)},
    ),
    ("GET", "/openapi.json"): Op(
        "This document", "service", auth="public", responses=ok(description="OpenAPI 3.1.")
    ),
    ("GET", "/docs"): Op(
        "This document as a web page",
        "service",
        auth="public",
        responses={200: Resp("HTML.", media="text/html", schema=STRING)},
    ),
    ("GET", "/widget.js"): Op(
        "The embeddable voice widget",
        "widget",
        auth="public",
        responses={
            200: Resp("JavaScript.", media="application/javascript", schema=STRING),
            304: Resp("Not modified (ETag).", media=None),
        },
    ),
    ("GET", "/demo"): Op(
        "A page that shows the widget",
        "widget",
        auth="public",
        responses={200: Resp("HTML.", media="text/html", schema=STRING)},
    ),
    # --- speech --------------------------------------------------------------------------
    ("GET", "/v1/voices"): Op("The voice catalog", "speech", responses=ok(VoiceList)),
    ("GET", "/v1/models"): Op("The models this server loads", "speech", responses=ok(ModelList)),
    ("POST", "/v1/tts"): Op(
        "Text to speech, streamed",
        "speech",
        body=TTSRequest,
        responses={200: audio()},
    ),
    ("GET", "/v1/tts/stream"): websocket(
        "Text to speech over a WebSocket", "speech", _NATIVE_TTS_WS
    ),
    ("POST", "/v1/stt"): Op(
        "Speech to text: an audio file (or raw PCM) in, a transcript out",
        "speech",
        body_media=AUDIO_BODY,
        params={
            "response_format": {"enum": ["json", "text", "srt", "vtt"], "default": "json"},
            "format": {"type": "string", "description": "Raw PCM, e.g. pcm_16000."},
        },
        responses={
            200: Resp(
                "The transcript with word timings; plain text, SRT or WebVTT instead as "
                "`response_format` asks.",
                model=Transcript,
            )
        },
    ),
    ("GET", "/v1/stt/stream"): websocket(
        "Speech to text over a WebSocket", "speech", _NATIVE_STT_WS
    ),
    # --- accounts, usage, audit ----------------------------------------------------------
    ("GET", "/v1/usage"): Op(
        "The workspace's usage by key, day or seat, paged",
        "usage",
        query=UsageQuery,
        responses=ok(UsagePage),
    ),
    ("GET", "/v1/audit-logs"): Op(
        "The workspace's audit log, newest first (owners and admins)",
        "audit",
        query=AuditLogQuery,
        responses=ok(AuditLogPage),
    ),
    ("POST", "/v1/auth/signup"): Op(
        "Sign up; a verification mail follows",
        "auth",
        auth="public",
        body=SignUpBody,
        responses=ok(SignUpResponse, 201, "Created."),
    ),
    ("POST", "/v1/auth/verify-email"): Op(
        "Verify an e-mail address with the mailed token",
        "auth",
        auth="public",
        body=TokenBody,
        responses={204: NO_CONTENT},
    ),
    ("POST", "/v1/auth/login"): Op(
        "Sign in with e-mail and password",
        "auth",
        auth="public",
        body=LoginBody,
        responses=_SIGNED_IN,
    ),
    ("POST", "/v1/auth/refresh"): Op(
        "Rotate a refresh token (a reused one revokes its family)",
        "auth",
        auth="public",
        body=RefreshBody,
        responses=ok(TokenResponse),
    ),
    ("POST", "/v1/auth/logout"): Op(
        "Sign out: revoke a refresh token",
        "auth",
        auth="public",
        body=RefreshBody,
        responses={204: NO_CONTENT},
    ),
    ("POST", "/v1/auth/logout-everywhere"): Op(
        "Sign out everywhere: every refresh token of the user revoked, access tokens issued "
        "before now refused, and the sockets their sessions opened closed",
        "auth",
        auth="user",
        responses={204: NO_CONTENT},
    ),
    ("POST", "/v1/auth/magic-link"): Op(
        "Mail a single-use sign-in link",
        "auth",
        auth="public",
        body=EmailBody,
        responses=ok(AcceptedResponse, 202, "Accepted."),
    ),
    ("POST", "/v1/auth/magic-link/redeem"): Op(
        "Sign in with a magic link's token",
        "auth",
        auth="public",
        body=TokenBody,
        responses=_SIGNED_IN,
    ),
    ("POST", "/v1/auth/password-reset"): Op(
        "Mail a password-reset link",
        "auth",
        auth="public",
        body=EmailBody,
        responses=ok(AcceptedResponse, 202, "Accepted."),
    ),
    ("POST", "/v1/auth/password-reset/confirm"): Op(
        "Set a new password with a reset link's token",
        "auth",
        auth="public",
        body=ResetConfirmBody,
        responses={204: NO_CONTENT},
    ),
    ("GET", "/v1/auth/me"): Op(
        "The signed-in user and their workspaces",
        "auth",
        auth="user",
        responses=ok(MeResponse),
    ),
    ("GET", "/v1/auth/mfa"): Op(
        "The signed-in user's second factors",
        "auth",
        auth="user",
        responses=ok(MfaStatusResponse),
    ),
    ("POST", "/v1/auth/mfa/totp"): Op(
        "Start enrolling an authenticator app (TOTP); confirm with a code",
        "auth",
        auth="user",
        responses=ok(TotpEnrolmentResponse, 201, "Pending confirmation."),
    ),
    ("POST", "/v1/auth/mfa/totp/confirm"): Op(
        "Confirm TOTP enrolment with a code; the recovery codes are shown this once",
        "auth",
        auth="user",
        body=ConfirmBody,
        responses=ok(RecoveryCodesResponse),
    ),
    ("DELETE", "/v1/auth/mfa/totp"): Op(
        "Turn TOTP off (a code or a recovery code proves it is you)",
        "auth",
        auth="user",
        body=DisableBody,
        responses={204: NO_CONTENT},
    ),
    ("POST", "/v1/auth/mfa/verify"): Op(
        "The second step of a sign-in: the challenge's token and a code",
        "auth",
        auth="public",
        body=VerifyBody,
        responses=ok(TokenResponse),
    ),
    ("POST", "/v1/auth/passkeys/register/options"): Op(
        "Options for navigator.credentials.create() to register a passkey",
        "auth",
        auth="user",
        responses=ok(OptionsResponse),
    ),
    ("POST", "/v1/auth/passkeys/register/verify"): Op(
        "Register the passkey the browser created",
        "auth",
        auth="user",
        body=CredentialBody,
        responses=ok(PasskeyModel, 201, "Registered."),
    ),
    ("POST", "/v1/auth/passkeys/login/options"): Op(
        "Options for navigator.credentials.get() to sign in with a passkey",
        "auth",
        auth="public",
        responses=ok(OptionsResponse),
    ),
    ("POST", "/v1/auth/passkeys/login/verify"): Op(
        "Sign in with the passkey's assertion",
        "auth",
        auth="public",
        body=CredentialBody,
        responses=ok(TokenResponse),
    ),
    ("GET", "/v1/auth/oauth/providers"): Op(
        "The sign-in providers (Google, GitHub, Apple) this server is set up for",
        "auth",
        auth="public",
        responses=ok(OAuthProvidersResponse),
    ),
    ("GET", "/v1/auth/oauth/{provider}/start"): Op(
        "Start signing in with a provider: 302 to its sign-in page",
        "auth",
        auth="public",
        description="Authorization code with PKCE; the state, verifier and nonce stay on the "
        "server. `redirect=false` answers the URL as JSON instead. Unknown or unconfigured "
        "provider: 404.",
        query=OAuthStartQuery,
        responses={
            200: Resp("With `redirect=false`: the sign-in page's URL.", model=OAuthStartResponse),
            302: Resp("To the provider's sign-in page.", media=None, headers={"Location": "it"}),
        },
    ),
    ("GET", "/v1/auth/oauth/{provider}/callback"): Op(
        "Where the provider sends the browser back (Google, GitHub): signs in",
        "auth",
        auth="public",
        description="Answers as POST /v1/auth/login does. A bad, used or expired `state`, or "
        "the provider's `error`: 400; the provider unreachable: 503.",
        params={name: STRING for name in ("code", "state", "error", "error_description")},
        responses=_SIGNED_IN,
    ),
    ("POST", "/v1/auth/oauth/{provider}/callback"): Op(
        "Where Apple posts the browser back (response_mode=form_post): signs in",
        "auth",
        auth="public",
        body_media={"application/x-www-form-urlencoded": {"type": "object"}},
        responses=_SIGNED_IN,
    ),
    # --- workspaces, members, API keys --------------------------------------------------
    ("GET", "/v1/workspaces"): Op(
        "The signed-in user's workspaces", "workspaces", auth="user", responses=ok(WorkspaceList)
    ),
    ("POST", "/v1/workspaces"): Op(
        "Create a workspace; its creator is the owner",
        "workspaces",
        auth="user",
        body=CreateWorkspaceBody,
        responses=ok(WorkspaceModel, 201, "Created."),
    ),
    ("POST", "/v1/invitations/accept"): Op(
        "Accept an invitation (the signed-in user's e-mail must match it)",
        "workspaces",
        auth="user",
        body=AcceptBody,
        responses=ok(AcceptedInvitation),
    ),
    ("GET", "/v1/workspaces/{workspace_id}"): Op(
        "The workspace's settings: its allowed page origins (owners and admins)",
        "workspaces",
        responses=ok(WorkspaceSettingsModel),
    ),
    ("PATCH", "/v1/workspaces/{workspace_id}"): Op(
        "Change the workspace's settings: the page origins that may use its browser sockets, "
        "WebRTC calls and widget (owners and admins)",
        "workspaces",
        body=WorkspaceSettingsBody,
        responses=ok(WorkspaceSettingsModel),
    ),
    ("GET", "/v1/workspaces/{workspace_id}/members"): Op(
        "The workspace's members (any member)", "workspaces", responses=ok(MemberList)
    ),
    ("POST", "/v1/workspaces/{workspace_id}/invitations"): Op(
        "Invite someone by e-mail (owners and admins)",
        "workspaces",
        body=InviteBody,
        responses=ok(InvitationModel, 201, "Invited; the mail is on its way."),
    ),
    ("GET", "/v1/workspaces/{workspace_id}/invitations"): Op(
        "The workspace's invitations, newest first, paged: pending ones unless `status` says "
        "otherwise (owners and admins)",
        "workspaces",
        query=InvitationQuery,
        responses=ok(InvitationPage),
    ),
    ("DELETE", "/v1/workspaces/{workspace_id}/invitations/{invitation_id}"): Op(
        "Cancel an invitation: its token no longer works (owners and admins; only an owner "
        "cancels an owner's); an accepted one is 409",
        "workspaces",
        responses={204: NO_CONTENT},
    ),
    ("PATCH", "/v1/workspaces/{workspace_id}/members/{user_id}"): Op(
        "Change a member's role or own quotas (owners and admins)",
        "workspaces",
        body=MemberChangeBody,
        responses=ok(SeatModel),
    ),
    ("DELETE", "/v1/workspaces/{workspace_id}/members/{user_id}"): Op(
        "Remove a member: their sessions and keys stop working at once",
        "workspaces",
        responses={204: NO_CONTENT},
    ),
    ("GET", "/v1/workspaces/{workspace_id}/translation"): Op(
        "The workspace's own dubbing translator, without its key (any member)",
        "workspaces",
        responses=ok(TranslationModel),
    ),
    ("PUT", "/v1/workspaces/{workspace_id}/translation"): Op(
        "Set the workspace's dubbing translator: an OpenAI-compatible chat endpoint its dubs "
        "use before the server's; without `api_key` the stored key is kept while `base_url` "
        "stays the same (owners and admins)",
        "workspaces",
        body=TranslationBody,
        responses=ok(TranslationModel),
    ),
    ("DELETE", "/v1/workspaces/{workspace_id}/translation"): Op(
        "Remove the workspace's dubbing translator: its dubs use the server's (owners and "
        "admins; 204 whether or not there was one)",
        "workspaces",
        responses={204: NO_CONTENT},
    ),
    ("POST", "/v1/api-keys"): Op(
        "Create an API key; the key is shown this once (owners and admins)",
        "api-keys",
        body=CreateApiKeyBody,
        responses=ok(CreatedApiKey, 201, "Created."),
    ),
    ("GET", "/v1/api-keys"): Op(
        "The workspace's API keys, without their secrets", "api-keys", responses=ok(ApiKeyList)
    ),
    ("DELETE", "/v1/api-keys/{key_id}"): Op(
        "Revoke an API key: sockets opened with it close",
        "api-keys",
        responses=ok(ApiKeyModel, description="The revoked key."),
    ),
    # --- jobs ---------------------------------------------------------------------------
    ("POST", "/v1/jobs"): Op(
        "Submit a background job (editor or above)",
        "jobs",
        description=(
            "With an `Idempotency-Key` header, the same key and body give back the same job "
            "(`Idempotent-Replayed: true`); the same key with another body is a 422, and while "
            "the first request with that key is still in flight a 409."
        ),
        body=JobSubmitBody,
        responses={
            202: Resp(
                "Accepted: the job, queued.",
                model=JobModel,
                headers={
                    "Location": "The job's URL.",
                    "Idempotent-Replayed": "`true` when an earlier request made the job.",
                },
            ),
            409: Resp("A request with this Idempotency-Key is still in flight."),
        },
    ),
    ("GET", "/v1/jobs"): Op(
        "The workspace's jobs, newest first, paged and filtered by status and type",
        "jobs",
        query=JobListQuery,
        responses=ok(JobPageModel),
    ),
    ("GET", "/v1/jobs/{job_id}"): Op(
        "A job: status, progress, result or error", "jobs", responses=ok(JobModel)
    ),
    ("POST", "/v1/jobs/{job_id}/cancel"): Op(
        "Cancel a job: at once when queued, at its next checkpoint when running",
        "jobs",
        responses={
            202: Resp("The job, cancelled or being cancelled.", model=JobModel),
            409: Resp("The job has already finished."),
        },
    ),
    # --- files -----------------------------------------------------------------------------
    ("POST", "/v1/files"): Op(
        "Upload a file for jobs (editor or above): one multipart part named `file`, streamed",
        "files",
        body_media={
            "multipart/form-data": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "contentMediaType": "*/*"}},
            }
        },
        responses={
            201: Resp("Stored.", model=FileModel),
            413: Resp("Past `VOICESTREAM_MAX_FILE_BYTES`: nothing was kept."),
        },
    ),
    ("POST", "/v1/files/uploads"): Op(
        "A signed, expiring URL to PUT a file's bytes to (editor or above)",
        "files",
        body=UploadBody,
        responses=ok(UploadModel, 201, "The file id, and where and how to PUT its bytes."),
    ),
    ("GET", "/v1/files/{file_id}"): Op(
        "A file's metadata and a signed download URL", "files", responses=ok(FileModel)
    ),
    ("DELETE", "/v1/files/{file_id}"): Op(
        "Delete a file and its bytes (editor or above)", "files", responses={204: NO_CONTENT}
    ),
    ("GET", "/v1/files/signed/download"): Op(
        "Download through a signed URL (from `GET /v1/files/{file_id}` or a job's result)",
        "files",
        auth="public",
        params=_SIGNED_QUERY,
        responses={
            200: Resp("The file's bytes.", media="*/*", schema=BINARY),
            403: Resp("The signature does not match."),
            410: Resp("The URL has expired."),
        },
    ),
    ("PUT", "/v1/files/signed/upload"): Op(
        "Upload through a signed URL (from `POST /v1/files/uploads`)",
        "files",
        auth="public",
        params=_SIGNED_QUERY,
        body_media={"*/*": BINARY},
        responses={
            200: Resp("Stored.", model=FileModel),
            403: Resp("The signature does not match."),
            409: Resp("The bytes were already uploaded."),
            410: Resp("The URL has expired."),
            413: Resp("Past `VOICESTREAM_MAX_FILE_BYTES`: nothing was kept."),
        },
    ),
    # --- webhooks (owners and admins) ----------------------------------------------------
    ("POST", "/v1/webhooks"): Op(
        "Add a webhook endpoint; its signing secret is shown this once",
        "webhooks",
        description="Events are sent as Standard Webhooks: `webhook-id`, `webhook-timestamp` "
        "and `webhook-signature` headers. The URL must be a public address unless the "
        "operator allows private ones.",
        body=CreateWebhookBody,
        responses=ok(CreatedWebhook, 201, "Created."),
    ),
    ("GET", "/v1/webhooks"): Op(
        "The workspace's webhook endpoints, without their secrets",
        "webhooks",
        responses=ok(WebhookList),
    ),
    ("GET", "/v1/webhooks/{webhook_id}"): Op(
        "A webhook endpoint", "webhooks", responses=ok(WebhookModel)
    ),
    ("PATCH", "/v1/webhooks/{webhook_id}"): Op(
        "Change a webhook endpoint; enabled=true resumes one that was disabled",
        "webhooks",
        body=WebhookPatchBody,
        responses=ok(WebhookModel),
    ),
    ("DELETE", "/v1/webhooks/{webhook_id}"): Op(
        "Delete a webhook endpoint and its delivery log",
        "webhooks",
        responses={204: NO_CONTENT},
    ),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): Op(
        "An endpoint's deliveries, newest first, paged",
        "webhooks",
        query=DeliveryQuery,
        responses=ok(DeliveryPage),
    ),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}"): Op(
        "A delivery with its payload and attempt log",
        "webhooks",
        responses=ok(DeliveryDetailModel),
    ),
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): Op(
        "Send a delivery again now, with a fresh round of retries",
        "webhooks",
        responses=ok(DeliveryModel, 202, "Queued."),
    ),
    ("POST", "/v1/webhooks/{webhook_id}/test"): Op(
        "Send a webhook.test event to this endpoint",
        "webhooks",
        responses=ok(DeliveryModel, 202, "Queued."),
    ),
    # --- credits --------------------------------------------------------------------------
    ("GET", "/v1/credits"): Op(
        "The workspace's credits: balance, open reservations and the ledger, newest first",
        "credits",
        query=CreditsQuery,
        responses=ok(CreditsResponse),
    ),
    # --- agents and conversations --------------------------------------------------------
    ("POST", "/v1/agents"): Op(
        "Create an agent (editor or above)",
        "agents",
        body=AgentCreateBody,
        responses=ok(AgentDetail, 201, "Created, with the documents made of `knowledge`."),
    ),
    ("GET", "/v1/agents"): Op("List the workspace's agents", "agents", responses=ok(AgentList)),
    ("GET", "/v1/agents/{agent_id}"): Op(
        "An agent and its documents", "agents", responses=ok(AgentDetail)
    ),
    ("PATCH", "/v1/agents/{agent_id}"): Op(
        "Change an agent (editor or above)",
        "agents",
        body=AgentPatchBody,
        responses=ok(AgentModel),
    ),
    ("DELETE", "/v1/agents/{agent_id}"): Op(
        "Delete an agent (editor or above)", "agents", responses={204: NO_CONTENT}
    ),
    ("POST", "/v1/agents/{agent_id}/documents"): Op(
        "Add a knowledge document (JSON text or a multipart file upload)",
        "agents",
        body=DocumentBody,
        body_media=MULTIPART,
        responses=ok(DocumentModel, 201, "Created: chunked and embedded."),
    ),
    ("GET", "/v1/agents/{agent_id}/documents"): Op(
        "An agent's knowledge documents", "agents", responses=ok(DocumentList)
    ),
    ("DELETE", "/v1/agents/{agent_id}/documents/{document_id}"): Op(
        "Delete a knowledge document", "agents", responses={204: NO_CONTENT}
    ),
    ("GET", "/v1/convai/sessions"): Op(
        "Stored conversations, newest first, without turns",
        "conversations",
        params={
            "agent_id": {"type": "string", "format": "uuid"},
            "end_user_id": STRING,
            "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
            "before": {"type": "string", "format": "date-time"},
        },
        responses=ok(SessionList),
    ),
    ("GET", "/v1/convai/sessions/{conversation_id}"): Op(
        "A stored conversation with its turns", "conversations", responses=ok(ConversationModel)
    ),
    ("POST", "/v1/convai/tickets"): Op(
        "A short-lived ticket for a browser to open a conversation",
        "conversations",
        body=TicketRequest,
        responses=ok(TicketResponse, 201, "The ticket."),
    ),
    ("GET", "/v1/convai/stream"): websocket(
        "A conversation with an agent", "conversations", _CONVAI_WS, auth="optional"
    ),
    ("POST", "/v1/convai/webrtc/offer"): Op(
        "Open a conversation over WebRTC: an SDP offer in, the answer out",
        "conversations",
        auth="optional",
        body=OfferRequest,
        responses=ok(WebRTCAnswer, description="The SDP answer and the peer's id."),
    ),
    ("PATCH", "/v1/convai/webrtc/offer"): Op(
        "Trickle ICE candidates to an open peer connection",
        "conversations",
        auth="optional",
        body=CandidatesRequest,
        responses=ok(CandidatesAccepted, description="The candidates were added."),
    ),
    ("OPTIONS", "/v1/convai/webrtc/offer"): Op(
        "CORS preflight for the offer", "conversations", auth="public", responses={204: NO_CONTENT}
    ),
    # --- telephony -----------------------------------------------------------------------
    ("GET", "/v1/telephony/twilio"): websocket(
        "Twilio Media Streams", "telephony", _CARRIER_WS, auth="optional"
    ),
    ("POST", "/v1/telephony/twilio/voice"): Op(
        "Twilio's voice webhook: TwiML that connects the call's media stream",
        "telephony",
        auth="optional",
        body_media={"application/x-www-form-urlencoded": {"type": "object"}},
        responses={200: Resp("TwiML.", media="text/xml", schema=STRING)},
    ),
    ("GET", "/v1/telephony/telnyx"): websocket(
        "Telnyx media streaming", "telephony", _CARRIER_WS, auth="optional"
    ),
    ("POST", "/v1/telephony/telnyx/voice"): Op(
        "Telnyx's voice webhook: TeXML that connects the call's media stream",
        "telephony",
        body_media={"application/x-www-form-urlencoded": {"type": "object"}},
        responses={200: Resp("TeXML.", media="text/xml", schema=STRING)},
    ),
    ("GET", "/v1/telephony/vonage"): websocket(
        "Vonage WebSocket audio", "telephony", _CARRIER_WS, auth="optional"
    ),
    ("GET", "/v1/telephony/vonage/answer"): Op(
        "Vonage's answer URL: an NCCO that connects the call",
        "telephony",
        responses=ok(Ncco, description="The NCCO."),
    ),
    ("POST", "/v1/telephony/vonage/answer"): Op(
        "Vonage's answer URL: an NCCO that connects the call",
        "telephony",
        responses=ok(Ncco, description="The NCCO."),
    ),
    **ADMIN_OPERATIONS,
    **BILLING_OPERATIONS,
    **COMPAT_OPERATIONS,
    **COMPLIANCE_OPERATIONS,
    **DUBBING_OPERATIONS,
    **MODERATION_OPERATIONS,
    **SSO_OPERATIONS,
    **PROJECT_OPERATIONS,
}
