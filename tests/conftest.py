"""Session-wide fixtures: real PostgreSQL and Redis processes, one real server on 127.0.0.1.

Engines load once per session (model loading is the slow part); the server runs in the test
process on an ephemeral port, so its log records are visible to the log guard in
``tests/server/conftest.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from fixtures_services import db_pool, embedded_services  # noqa: F401  (fixtures)
from voicestream.config import Settings, load_settings
from voicestream.engines.catalog import EngineRegistry, build_default_registry
from voicestream.server.app import create_app
from voicestream.server.request_deadlines import server_options
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository


@dataclass(frozen=True)
class RunningServer:
    url: str
    ws_url: str
    app: web.Application
    settings: Settings
    api_key: str

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}


@pytest.fixture(scope="session")
def registry() -> EngineRegistry:
    return build_default_registry(load_settings({}))


@pytest.fixture(scope="session")
async def server(
    embedded_services: ServiceURLs,  # noqa: F811  (fixture injection)
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningServer]:
    settings = load_settings(
        {},
        data_dir=tmp_path_factory.mktemp("server-data"),
        database_url=embedded_services.database_url,
        redis_url=embedded_services.redis_url,
        port=0,
        # Small limits so the oversized-input tests stay small.
        max_text_chars=2000,
        max_ws_message_bytes=64 * 1024,
        max_upload_bytes=4 * 1024 * 1024,
        # Every WebRTC packet of the suite stays on loopback.
        webrtc_host_addresses="127.0.0.1",
        # Tests that want the silence timeout set it per session.
        convai_silence_timeout_seconds=0,
        # The one foreign site whose pages may use the widget and sockets (test_origin.py).
        allowed_origins="https://shop.example",
    )
    app = create_app(settings, registry=registry)
    # The connection limits production runs with (server/main.py), not aiohttp's defaults.
    runner = web.AppRunner(app, access_log=None, **server_options(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    from voicestream.transports.context import RUNTIME

    _, key = await ApiKeyRepository(app[RUNTIME].pool).create(workspace="tests", role="owner")
    try:
        yield RunningServer(f"http://{host}:{port}", f"ws://{host}:{port}", app, settings, key)
    finally:
        await runner.cleanup()


class _ErrorRecorder(logging.Handler):
    """Collects every ERROR record and every record carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@pytest.fixture(scope="session")
def error_log() -> Iterator[_ErrorRecorder]:
    handler = _ErrorRecorder()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture
def sample_dir() -> Path:
    return Path(__file__).parent / "data"
