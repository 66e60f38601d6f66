"""Small helpers shared by the tests (not fixtures): word error rate, the sentence corpus,
starting a server with settings of its own."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jiwer
from aiohttp import web

from voicestream.config import Settings, load_settings
from voicestream.engines.catalog import EngineRegistry
from voicestream.rest.resources import POOL
from voicestream.server.app import create_app
from voicestream.server.request_deadlines import server_options
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository

DATA = Path(__file__).parent / "data"


def sentences() -> list[str]:
    return [s for s in (DATA / "sentences.txt").read_text().splitlines() if s.strip()]


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]", " ", text.lower())).strip()


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over a whole corpus (not the mean of per-sentence rates)."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) or "<empty>" for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


@dataclass(frozen=True)
class StartedServer:
    """A voicestream server running in the test process on an ephemeral 127.0.0.1 port."""

    url: str
    ws_url: str
    host: str
    port: int
    app: web.Application
    settings: Settings
    api_key: str  # an owner key of ``key_workspace``; "" when none was asked for

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}


def settings_for_test_server(services: ServiceURLs, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a server of the test process on the session's PostgreSQL and Redis: an
    ephemeral port, no silence timeout (tests that want one set it), plus ``overrides``."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": services.database_url,
        "redis_url": services.redis_url,
        "port": 0,
        "convai_silence_timeout_seconds": 0,
    }
    return load_settings({}, **{**values, **overrides})


@asynccontextmanager
async def start_test_server(
    settings: Settings,
    registry: EngineRegistry,
    *,
    key_workspace: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[StartedServer]:
    """Run the app for ``settings`` (engines from ``registry``, loaded once per session) until
    the block ends, with the connection limits production runs with (server/main.py)."""
    app = create_app(settings, registry=registry)
    runner = web.AppRunner(app, access_log=None, **server_options(settings))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        host, port = runner.addresses[0][:2]
        key = ""
        if key_workspace is not None:
            _, key = await ApiKeyRepository(app[POOL]).create(workspace=key_workspace, role="owner")
        secure = "s" if ssl_context is not None else ""
        yield StartedServer(
            f"http{secure}://{host}:{port}",
            f"ws{secure}://{host}:{port}",
            host,
            port,
            app,
            settings,
            key,
        )
    finally:
        await runner.cleanup()
