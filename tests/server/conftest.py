"""Every server test runs with a loop-blocking detector and fails on any server-side error log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from blockbuster import BlockBuster, blockbuster_ctx


@pytest.fixture(autouse=True)
def no_server_errors(error_log: logging.Handler) -> Iterator[None]:
    records: list[logging.LogRecord] = error_log.records  # type: ignore[attr-defined]
    records.clear()
    yield
    problems = [f"{r.name}: {r.getMessage()}" for r in records]
    records.clear()
    assert not problems, "server logged errors or tracebacks:\n" + "\n".join(problems)


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    # Any blocking call (file I/O, time.sleep, blocking sockets) made on the event-loop thread
    # raises inside the server, which then shows up as an error and fails the test.
    with blockbuster_ctx("voicestream") as bb:
        yield bb


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for the test's requests, closed when it ends."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session
