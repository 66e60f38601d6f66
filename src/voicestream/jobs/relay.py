"""The outbox relay: committed outbox rows onto the job stream, and the sweeper.

Every process with jobs (the server, each worker) runs one; several at once are safe (rows
are taken with SKIP LOCKED). A row is deleted only in the transaction that saw its message
accepted by Redis, so a crash between the two sends a message twice (harmless), never zero
times. The sweeper puts jobs back on the stream whose message was lost (Redis lost data) or
whose worker died (its lease lapsed), and ends the lapsed jobs that must not run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final, Protocol

from ..config import Settings
from ..store import db
from ..store import jobs as store
from ..store.services import outage_error
from .lifecycle import JobService

__all__ = ["OutboxRelay"]

log = logging.getLogger(__name__)

_BATCH: Final = 100


class _Kicker(Protocol):
    async def kiq(self, job_id: str) -> Any: ...


class OutboxRelay:
    def __init__(
        self, pool: db.Pool, task: _Kicker, service: JobService, settings: Settings
    ) -> None:
        self._pool = pool
        self._task = task
        self._service = service
        self._poll_s = settings.jobs_poll_seconds
        self._republish_s = settings.jobs_republish_seconds
        # The sweep is cheap, but every process runs one: not on every poll.
        self._sweep_every_s = max(self._poll_s, min(5.0, settings.jobs_lease_seconds / 3))
        self._wake = asyncio.Event()
        self._failing = False

    def poke(self) -> None:
        """Something was just committed to the outbox: publish now, not at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        next_sweep = 0.0
        while True:
            self._wake.clear()
            published = 0
            try:
                published = await self.publish_due()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self._sweep_every_s
                    await self.sweep()
                if self._failing:
                    log.info("job outbox relay recovered")
                self._failing = False
            except Exception as exc:
                if outage_error(exc) is None:
                    # A bug, not an outage: said loudly, but the relay keeps going.
                    log.exception("job outbox relay failed")
                elif not self._failing:
                    log.warning("job outbox relay waiting for its services: %s", exc)
                    self._failing = True
            if published == _BATCH:
                continue  # more are waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def publish_due(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await store.take_outbox(conn, _BATCH)
            for _, job_id in rows:
                await self._task.kiq(str(job_id))
            if rows:
                await store.mark_published(conn, [i for i, _ in rows], [j for _, j in rows])
        return len(rows)

    async def sweep(self) -> None:
        ended = await self._service.end_lapsed()
        added = await store.republish_stale(self._pool, self._republish_s)
        if ended or added:
            log.info("job sweeper: %d lapsed job(s) ended, %d put back on the stream", ended, added)
        if added:
            self._wake.set()
