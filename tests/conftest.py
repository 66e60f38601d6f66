"""Session-wide fixtures: real PostgreSQL and Redis processes, one real server on 127.0.0.1.

Engines load once per session (model loading is the slow part); the server runs in the test
process on an ephemeral port, so its log records are visible to the log guard in
``tests/server/conftest.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fixtures_services import db_pool, embedded_services  # noqa: F401  (fixtures)
from helpers import StartedServer, settings_for_test_server, start_test_server
from voicestream.config import load_settings
from voicestream.engines.catalog import EngineRegistry, build_default_registry
from voicestream.store.embedded import ServiceURLs

# The session server is a StartedServer; the old name stays for the tests that annotate it.
RunningServer = StartedServer


@pytest.fixture(scope="session")
def registry() -> EngineRegistry:
    return build_default_registry(load_settings({}))


@pytest.fixture(scope="session")
async def server(
    embedded_services: ServiceURLs,  # noqa: F811  (fixture injection)
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningServer]:
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("server-data"),
        # Small limits so the oversized-input tests stay small.
        max_text_chars=2000,
        max_ws_message_bytes=64 * 1024,
        max_upload_bytes=4 * 1024 * 1024,
        # Every WebRTC packet of the suite stays on loopback.
        webrtc_host_addresses="127.0.0.1",
        # The one foreign site whose pages may use the widget and sockets (test_origin.py).
        allowed_origins="https://shop.example",
        # Webhook receivers of the suite listen on loopback; failed deliveries retry at once
        # (test_webhooks_api.py starts its own server with private addresses refused).
        webhook_allow_private=True,
        webhook_retry_schedule="0.2,0.2,0.2",
        webhook_timeout_seconds=2,
    )
    async with start_test_server(settings, registry, key_workspace="tests") as started:
        yield started


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
