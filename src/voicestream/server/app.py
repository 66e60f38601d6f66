"""The application factory: every resource opened in a cleanup context, every route mounted.

``create_app`` composes an ``aiohttp.web.Application`` (never subclassed). Each shared resource
lives behind its own typed app key (``rest/resources.py``); their lifetimes are cleanup
contexts, so a failed start undoes what had started, and shutdown runs in reverse order. The
REST domains are sub-apps, each owning its prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ..billing.ledger import CreditPolicy
from ..billing.metering import CreditMeter
from ..billing.plans import plan_table
from ..config import Settings
from ..dubbing.workspace_translators import WorkspaceTranslators
from ..engines.agents.services import open_agent_services
from ..engines.catalog import EngineRegistry, build_default_registry, finish_loading
from ..engines.executor import InferenceExecutor
from ..identity.accounts import open_accounts
from ..identity.audit_trail import AUDIT_TRAIL, AuditTrail
from ..identity.compliance import COMPLIANCE, ComplianceRules
from ..identity.members import Members
from ..identity.oauth_sign_in import open_oauth_sign_in
from ..jobs.webhook_sender import run_webhook_sender
from ..jobs.webhooks import Webhooks
from ..observability.log_redaction import install_log_redaction
from ..observability.loop_lag import monitor_loop_lag
from ..observability.metrics import Metrics
from ..observability.stt_pool_metrics import DecoderPoolCollector
from ..resilience.circuit_breakers import (
    BreakerPolicy,
    CircuitBreakerCollector,
    configure_breakers,
)
from ..rest.admin import ADMIN_PREFIX, admin_app
from ..rest.admin_audit import audit_admin_routes
from ..rest.admin_seats import seats_admin_routes
from ..rest.admin_settings import settings_admin_routes
from ..rest.agents import AGENTS_PREFIX, agents_app
from ..rest.api_keys import API_KEYS_PREFIX, api_keys_app
from ..rest.audit_logs import AUDIT_LOGS_PREFIX, audit_logs_app
from ..rest.auth import ACCOUNTS
from ..rest.auth_domain import AUTH_MOUNT, auth_app
from ..rest.billing import BILLING_PREFIX, billing_admin_routes, billing_app
from ..rest.compliance import compliance_admin_routes
from ..rest.conversations import CONVERSATIONS_PREFIX, conversations_app
from ..rest.credits import CREDITS_PREFIX, credits_app
from ..rest.dubbing import DUBBING_PREFIX, dubbing_app
from ..rest.files import FILES, FILES_PREFIX, files_app
from ..rest.jobs import JOBS_PREFIX, jobs_app
from ..rest.model_catalog import list_models
from ..rest.moderation import moderation_admin_routes, moderation_runtime
from ..rest.oauth import OAUTH_SIGN_IN
from ..rest.operator import OPERATOR_PREFIX, operator_app
from ..rest.projects import PROJECTS_PREFIX, projects_app
from ..rest.resources import (
    AGENT_RESOLVER,
    AGENTS,
    API_KEYS,
    CONVERSATIONS,
    HISTORY,
    KNOWLEDGE,
    MEDIA_EXECUTOR,
    METRICS,
    POOL,
    REDIS,
    REGISTRY,
    SECRET_KEY,
    SETTINGS,
    STT_EXECUTOR,
    TTS_EXECUTORS,
    USAGE,
)
from ..rest.saml import sso_admin_routes
from ..rest.scim import SCIM_PREFIX, scim_app
from ..rest.scim_admin import scim_admin_routes
from ..rest.usage import USAGE_PREFIX, usage_app
from ..rest.voices import list_voices
from ..rest.webhooks import WEBHOOKS, WEBHOOKS_PREFIX, webhooks_app
from ..rest.workspace_translation import TRANSLATORS, translation_routes
from ..rest.workspaces import (
    INVITATIONS_PREFIX,
    MEMBERS,
    WORKSPACES_PREFIX,
    invitations_app,
    workspaces_app,
)
from ..store.audit import AuditLog
from ..store.conversation_upkeep import open_conversations
from ..store.files import open_file_store
from ..store.history import HistoryRepository
from ..store.keys import ApiKeyRepository
from ..store.secrets import SecretBox, load_or_create_secret
from ..store.services import open_services
from ..store.usage import UsageRepository
from ..store.webhooks import WebhookRepository
from ..store.workspace_translators import WorkspaceTranslatorRepository
from ..transports.convai_ws import ws_convai
from ..transports.elevenlabs_agents import add_elevenlabs_agents_routes
from ..transports.elevenlabs_dialogue import add_elevenlabs_dialogue_routes
from ..transports.elevenlabs_dubbing import add_elevenlabs_dubbing_routes
from ..transports.elevenlabs_history import add_elevenlabs_history_routes
from ..transports.elevenlabs_rest import add_elevenlabs_routes
from ..transports.elevenlabs_streams import add_elevenlabs_stream_routes
from ..transports.elevenlabs_studio import add_elevenlabs_studio_routes
from ..transports.http_stt import post_stt
from ..transports.http_tts import post_tts
from ..transports.openai_audio import add_openai_audio_routes
from ..transports.openai_realtime import add_openai_realtime_routes
from ..transports.socket_registry import add_socket_registry
from ..transports.telephony_twilio import add_twilio_routes
from ..transports.telnyx_vonage import add_telephony_routes
from ..transports.tickets import post_ticket
from ..transports.webrtc import (
    options_webrtc_offer,
    patch_webrtc_offer,
    post_webrtc_offer,
    webrtc_peers,
)
from ..transports.ws_stt import ws_stt
from ..transports.ws_tts import ws_tts
from ..transports.wyoming_tcp import wyoming_server
from .api_docs import add_api_docs
from .compliance_middleware import compliance_middleware
from .health import healthz, metrics, readyz
from .jobs_runtime import SERVICE_URLS, jobs_runtime
from .middleware import auth_middleware, error_middleware
from .origin import add_page_origins, origin_middleware
from .parser_refusals import install_json_parser_refusals
from .rate_limits import add_limits, rate_limit_middleware
from .request_deadlines import body_deadline_middleware
from .request_validation import client_error_logger
from .route_policy import add_policy_check
from .text_screening import text_screening_middleware
from .widget import get_demo, get_widget_js

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, registry: EngineRegistry | None = None) -> web.Application:
    """Build the application; nothing starts until the app runs (``cleanup_ctx``).

    ``registry`` lets a process that runs several apps (tests, benchmarks) load engines once.
    """
    # Here as well as in configure_logging: a process that embeds the app (tests, benchmarks)
    # configures its own logging, and must not log credentials either.
    install_log_redaction()
    # aiohttp answers what its HTTP parser refuses itself; JSON like every other error.
    install_json_parser_refusals()
    configure_breakers(BreakerPolicy.from_settings(settings))
    plan_table(settings)  # a malformed VOICESTREAM_BILLING_PLANS stops the start, not a request
    app = web.Application(
        client_max_size=settings.max_upload_bytes,
        # A request aiohttp's parser refuses is the client's mistake: no traceback for it.
        handler_args={"logger": client_error_logger()},
        middlewares=[
            error_middleware,
            body_deadline_middleware(
                settings.body_timeout_seconds, settings.body_idle_timeout_seconds
            ),
            origin_middleware,  # before auth: a refused page costs no key lookup
            auth_middleware,
            compliance_middleware,  # the workspace's IP allow-list and HIPAA mode (after auth)
            rate_limit_middleware,  # per caller; streams per workspace (after auth)
            text_screening_middleware,  # what a request speaks meets its content policy
        ],
    )
    app.cleanup_ctx.append(_runtime(settings, registry))
    app.cleanup_ctx.append(moderation_runtime)  # app[MODERATOR]; the jobs' screens use it
    app.cleanup_ctx.append(_loop_lag_monitor)
    app.cleanup_ctx.append(_webhooks)  # endpoints, and the sender of their deliveries
    app.cleanup_ctx.append(_translators)  # workspaces' own dubbing translators
    app.cleanup_ctx.append(_files)  # object storage and file rows (app[FILES])
    app.cleanup_ctx.append(jobs_runtime)  # job submission, the outbox relay, a worker
    add_page_origins(app)  # workspaces' own Origin lists (before the socket registry)
    add_socket_registry(app)  # revoking a key closes its open sockets and calls
    add_limits(app)  # request rates and stream slots in Redis (after the runtime)
    app.cleanup_ctx.append(wyoming_server)  # only when VOICESTREAM_WYOMING_PORT is set
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/voices", list_voices)
    app.router.add_get("/v1/models", list_models)
    app.add_subapp(USAGE_PREFIX, usage_app())  # the workspace's usage, paged
    app.router.add_post("/v1/tts", post_tts)
    app.router.add_get("/v1/tts/stream", ws_tts)
    app.router.add_post("/v1/stt", post_stt)
    app.router.add_get("/v1/stt/stream", ws_stt)
    # The REST domains, each a sub-app owning its prefix: this app's middlewares run for their
    # routes, and their handlers read this app's resources through request.config_dict.
    app.add_subapp(AGENTS_PREFIX, agents_app())  # agents and their documents
    app.add_subapp(CONVERSATIONS_PREFIX, conversations_app())  # stored conversations
    app.add_subapp(AUDIT_LOGS_PREFIX, audit_logs_app())  # app[AUDIT_TRAIL], below
    # Sign-up, sessions, MFA, passkeys, OAuth (app[ACCOUNTS], app[OAUTH_SIGN_IN], below).
    app.add_subapp(AUTH_MOUNT, auth_app())
    workspaces = workspaces_app()  # members, invitations, settings
    workspaces.add_routes(translation_routes())  # its dubbing translator (app[TRANSLATORS])
    app.add_subapp(WORKSPACES_PREFIX, workspaces)
    app.add_subapp(INVITATIONS_PREFIX, invitations_app())
    app.add_subapp(API_KEYS_PREFIX, api_keys_app())
    app.add_subapp(WEBHOOKS_PREFIX, webhooks_app())  # endpoints, delivery log (app[WEBHOOKS])
    app.add_subapp(JOBS_PREFIX, jobs_app())  # background jobs (app[JOBS])
    app.add_subapp(FILES_PREFIX, files_app())  # uploads, job outputs, signed URLs
    app.add_subapp(DUBBING_PREFIX, dubbing_app())  # dubs, their segments and outputs
    app.add_subapp(PROJECTS_PREFIX, projects_app())  # studio timelines, versions, exports
    app.add_subapp(CREDITS_PREFIX, credits_app())  # balance, reservations, the ledger
    app.add_subapp(BILLING_PREFIX, billing_app())  # Stripe's webhook (signature-checked)
    app.add_subapp(OPERATOR_PREFIX, operator_app())  # the server operator's cross-workspace reads
    # A workspace's administration: each domain's group of routes under the one /v1/admin.
    admin = admin_app(
        # one line per domain: its *_admin_routes()
        billing_admin_routes(),  # plan, subscription, invoices, overage, reconciliation
        compliance_admin_routes(),
        moderation_admin_routes(),
        seats_admin_routes(),  # seats, invitations, per-seat quotas and usage
        audit_admin_routes(),  # the audit log's CSV/JSON export
        settings_admin_routes(),  # the workspace's name and allowed origins
        scim_admin_routes(),  # SCIM tokens and the group -> role mapping
        sso_admin_routes(),  # the workspace's SAML identity provider
    )
    app.add_subapp(ADMIN_PREFIX, admin)
    app.add_subapp(SCIM_PREFIX, scim_app())  # SCIM 2.0 provisioning, its own bearer token
    app.router.add_get("/v1/convai/stream", ws_convai)
    app.router.add_post("/v1/convai/tickets", post_ticket)
    add_openai_audio_routes(app)  # /openai/v1/audio/speech, /audio/transcriptions, /models
    add_elevenlabs_routes(app)  # /elevenlabs/v1/…: ElevenLabs SDK drop-in (REST)
    add_openai_realtime_routes(app)  # WS /openai/v1/realtime
    add_elevenlabs_stream_routes(app)  # WS …/stream-input, …/multi-stream-input, STT realtime
    add_elevenlabs_agents_routes(app)  # WS /elevenlabs/v1/convai/conversation, signed URLs
    add_elevenlabs_history_routes(app)  # /elevenlabs/v1/history…
    add_elevenlabs_dialogue_routes(app)  # /elevenlabs/v1/text-to-dialogue…
    add_elevenlabs_studio_routes(app)  # /elevenlabs/v1/studio/projects…
    add_elevenlabs_dubbing_routes(app)  # /elevenlabs/v1/dubbing…, the Dubbing Studio resource
    add_twilio_routes(app)  # WS /v1/telephony/twilio, POST /v1/telephony/twilio/voice (TwiML)
    add_telephony_routes(app)  # WS /v1/telephony/telnyx, /v1/telephony/vonage
    app.cleanup_ctx.append(webrtc_peers)
    app.router.add_post("/v1/convai/webrtc/offer", post_webrtc_offer)
    app.router.add_patch("/v1/convai/webrtc/offer", patch_webrtc_offer)
    app.router.add_route("OPTIONS", "/v1/convai/webrtc/offer", options_webrtc_offer)
    app.router.add_get("/widget.js", get_widget_js)
    app.router.add_get("/demo", get_demo)
    add_api_docs(app)  # /openapi.json, /docs: built at start-up from every route above
    add_policy_check(app)  # at start-up: a route without a policy entry stops the server
    return app


def _runtime(
    settings: Settings, registry: EngineRegistry | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # First: agents' stored LLM keys are encrypted under a key derived from it.
        secret_key = settings.secret_key
        if secret_key is None:
            secret_key = await asyncio.to_thread(load_or_create_secret, settings.data_dir)
        async with (
            open_services(settings) as services,
            open_agent_services(settings, services.pool, secret_key) as agent_services,
            open_conversations(
                services.pool,
                outbox_dir=settings.data_dir / "outbox",
                heartbeat_s=settings.conversation_heartbeat_seconds,
            ) as conversations,
        ):
            reg = registry
            if reg is None:
                # Blocking work, kept off the loop even at start-up. Only the engines' cheap
                # construction is awaited: the models load in the background while the server
                # already listens, and /readyz says 503 (naming them) until they have.
                reg = await asyncio.to_thread(build_default_registry, settings, warm=False)
            loading: asyncio.Task[None] | None = None
            if not reg.warmed:
                loading = asyncio.create_task(_load_models(reg, settings), name="load-models")
            executors = {
                name: InferenceExecutor(f"tts-{name}", settings.tts_threads)
                for name in reg.tts_engine_names()
            }
            stt_executor = InferenceExecutor("stt", settings.stt_threads)
            # Decoding uploads and encoding compressed output: CPU work kept off the loop.
            media_executor = InferenceExecutor("media", settings.tts_threads)
            try:
                app[ACCOUNTS] = open_accounts(settings, services.pool, secret_key)
                app[OAUTH_SIGN_IN] = await open_oauth_sign_in(
                    settings, services.pool, app[ACCOUNTS]
                )
                app[AUDIT_TRAIL] = AuditTrail(
                    AuditLog(services.pool), settings.trust_forwarded_headers
                )
                app[COMPLIANCE] = ComplianceRules(
                    services.pool, trust_forwarded_headers=settings.trust_forwarded_headers
                )
                app[MEMBERS] = Members.open(services.pool, app[ACCOUNTS].mailer)
                # One typed key per shared resource (rest/resources.py).
                app[SETTINGS] = settings
                app[REGISTRY] = reg
                app[TTS_EXECUTORS] = executors
                app[STT_EXECUTOR] = stt_executor
                app[MEDIA_EXECUTOR] = media_executor
                app[METRICS] = _metrics(reg)
                app[POOL] = services.pool
                app[REDIS] = services.redis
                app[SERVICE_URLS] = services.urls
                app[API_KEYS] = ApiKeyRepository(services.pool)
                # Every usage record also posts its credits (billing/metering.py).
                app[USAGE] = UsageRepository(
                    services.pool,
                    CreditMeter(services.pool, CreditPolicy.from_settings(settings)),
                )
                app[HISTORY] = HistoryRepository(services.pool)
                app[AGENTS] = agent_services.agents
                app[CONVERSATIONS] = conversations  # durable: outbox, heartbeat, sweep
                app[KNOWLEDGE] = agent_services.knowledge
                app[AGENT_RESOLVER] = agent_services.resolver
                app[SECRET_KEY] = secret_key
                yield
            finally:
                if loading is not None and not loading.done():
                    # The loading thread cannot be interrupted; stop waiting for it.
                    loading.cancel()
                for ex in (*executors.values(), stt_executor, media_executor):
                    await asyncio.to_thread(ex.shutdown)

    return ctx


async def _load_models(registry: EngineRegistry, settings: Settings) -> None:
    try:
        await asyncio.to_thread(finish_loading, registry, settings)
    except Exception:  # each engine's failure is handled inside; this is a bug, not a model
        log.exception("loading the models failed")


def _metrics(registry: EngineRegistry) -> Metrics:
    metrics = Metrics()
    metrics.registry.register(DecoderPoolCollector(registry.stt_engines))
    metrics.registry.register(CircuitBreakerCollector())
    return metrics


async def _webhooks(app: web.Application) -> AsyncIterator[None]:
    """The workspaces' webhook endpoints, and this process's sender of their deliveries (each
    server and worker runs one; they share the work through the database)."""
    settings, secret_key = app[SETTINGS], app[SECRET_KEY]
    repo = WebhookRepository(app[POOL])
    box = SecretBox(secret_key)
    app[WEBHOOKS] = Webhooks(repo, box, allow_private=settings.webhook_allow_private)
    async with run_webhook_sender(app[POOL], settings, secret_key):
        yield


async def _translators(app: web.Application) -> AsyncIterator[None]:
    """Workspaces' own translators for dubbing; their endpoints follow the webhooks' address
    rule, and their keys are sealed like the webhooks' secrets."""
    app[TRANSLATORS] = WorkspaceTranslators(
        WorkspaceTranslatorRepository(app[POOL]),
        SecretBox(app[SECRET_KEY]),
        allow_private=app[SETTINGS].webhook_allow_private,
    )
    yield


async def _files(app: web.Application) -> AsyncIterator[None]:
    """Files: bytes in the configured object storage (local or S3), rows in PostgreSQL."""
    async with open_file_store(app[SETTINGS], app[POOL], app[SECRET_KEY]) as files:
        app[FILES] = files
        yield


async def _loop_lag_monitor(app: web.Application) -> AsyncIterator[None]:
    observe = app[METRICS].loop_lag.observe
    task = asyncio.create_task(monitor_loop_lag(observe), name="loop-lag")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
