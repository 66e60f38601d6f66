"""Keep the embedded PostgreSQL and redis-server of a data dir alive while we lease them.

A service that dies under us (``kill -9``, the OOM killer, a crash) is restarted on the same
port, from the same data dir, with the same (password-less, loopback-only) access, so the
server's asyncpg pool and Redis client reconnect to it by themselves. Restarts back off while
a start keeps failing. A dead service is an incident, not a bug in this process: it is
logged as a WARNING, and requests in the meantime get 503 ``service_unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from voicestream.store._errors import EmbeddedServiceError
from voicestream.store.embedded import EmbeddedServices

__all__ = ["supervise", "supervised"]

log = logging.getLogger(__name__)

_POLL_S = 0.5
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 30.0
_NAMES = {"postgres": "PostgreSQL", "redis": "redis-server"}


async def supervise(services: EmbeddedServices, *, poll_s: float = _POLL_S) -> None:
    """Watch the leased services until cancelled, restarting any that died."""
    backoff = _FIRST_BACKOFF_S
    while True:
        await asyncio.sleep(poll_s)
        dead = await services.dead_services()
        if not dead:
            backoff = _FIRST_BACKOFF_S
            continue
        names = ", ".join(_NAMES[name] for name in sorted(dead))
        log.warning("embedded %s stopped unexpectedly; restarting", names)
        try:
            await services.restart(dead)
        except (EmbeddedServiceError, OSError, TimeoutError) as exc:
            # Typical right after a kill -9 of PostgreSQL: its orphaned backends still hold
            # the shared memory for a moment, and the start is refused until they are gone.
            log.warning("restarting embedded %s failed, next try in %.1fs: %s", names, backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)
            continue
        log.warning("embedded %s restarted", names)
        backoff = _FIRST_BACKOFF_S


@contextlib.asynccontextmanager
async def supervised(services: EmbeddedServices) -> AsyncIterator[None]:
    """Run ``supervise`` for the duration of the block (stopped before the lease is released)."""
    task = asyncio.create_task(supervise(services), name="embedded-services-supervisor")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
