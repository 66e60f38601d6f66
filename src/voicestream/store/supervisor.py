"""Keep the embedded PostgreSQL and redis-server of a data dir alive while we lease them.

A service that dies under us (``kill -9``, the OOM killer, a crash) is restarted on the same
port, from the same data dir, with the same (password-less, loopback-only) access, so the
server's asyncpg pool and Redis client reconnect to it by themselves. A service that keeps
dying (or keeps failing to start) is restarted ever more slowly; only one that stayed up a
while is restarted at once again. A dead service is an incident, not a bug in this process:
it is logged as a WARNING, and requests in the meantime get 503 ``service_unavailable``.
Anything else going wrong in here is logged with its traceback, and supervision goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from voicestream.store._errors import EmbeddedServiceError

__all__ = ["RestartBackoff", "SupervisedServices", "supervise", "supervised"]

log = logging.getLogger(__name__)

_POLL_S = 0.5
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 30.0
# A service that ran this long before dying is taken to have been healthy: restart it at once.
_STABLE_S = 30.0
_NAMES = {"postgres": "PostgreSQL", "redis": "redis-server"}


class SupervisedServices(Protocol):
    """What the supervisor needs of ``EmbeddedServices``."""

    async def dead_services(self) -> set[str]: ...

    async def restart(self, names: set[str]) -> None: ...


class RestartBackoff:
    """How long to wait before the next restart attempt.

    The first restart of a service that had been up for ``stable_s`` happens at once; any
    attempt sooner after the previous one (it died right after starting, or the start failed)
    waits twice as long as the last wait, up to ``max_s``.
    """

    def __init__(
        self,
        *,
        first_s: float = _FIRST_BACKOFF_S,
        max_s: float = _MAX_BACKOFF_S,
        stable_s: float = _STABLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._stable_s = stable_s
        self._clock = clock
        self._wait_s = 0.0
        self._last_attempt: float | None = None

    def next_wait(self) -> float:
        """Seconds to wait before attempting a restart now; call ``attempted`` after it."""
        if self._last_attempt is None or self._clock() - self._last_attempt >= self._stable_s:
            self._wait_s = 0.0
        else:
            self._wait_s = min(max(self._wait_s * 2, self._first_s), self._max_s)
        return self._wait_s

    def attempted(self) -> None:
        self._last_attempt = self._clock()


async def supervise(
    services: SupervisedServices,
    *,
    poll_s: float = _POLL_S,
    backoff: RestartBackoff | None = None,
) -> None:
    """Watch the leased services until cancelled, restarting any that died."""
    backoff = backoff or RestartBackoff()
    while True:
        await asyncio.sleep(poll_s)
        try:
            await _check_once(services, backoff)
        except (EmbeddedServiceError, OSError, TimeoutError) as exc:
            # Typical right after a kill -9 of PostgreSQL: its orphaned backends still hold
            # the shared memory for a moment, and the start is refused until they are gone.
            log.warning("restarting embedded services failed, will retry: %s", exc)
        except Exception:
            # A bug or a surprise (a driver error while a service comes up): the supervisor
            # dying with it would turn the next crash into a permanent outage.
            log.exception("supervising the embedded services failed; carrying on")


async def _check_once(services: SupervisedServices, backoff: RestartBackoff) -> None:
    dead = await services.dead_services()
    if not dead:
        return
    names = ", ".join(_NAMES.get(name, name) for name in sorted(dead))
    wait_s = backoff.next_wait()
    if wait_s:
        log.warning("embedded %s stopped again soon; restarting in %.1fs", names, wait_s)
        await asyncio.sleep(wait_s)
    else:
        log.warning("embedded %s stopped unexpectedly; restarting", names)
    backoff.attempted()
    await services.restart(dead)
    log.warning("embedded %s restarted", names)


@contextlib.asynccontextmanager
async def supervised(services: SupervisedServices) -> AsyncIterator[None]:
    """Run ``supervise`` for the duration of the block (stopped before the lease is released)."""
    task = asyncio.create_task(supervise(services), name="embedded-services-supervisor")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
