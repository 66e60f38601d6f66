"""Admitting a stream: a slot of its workspace's concurrent-stream cap, and quota headroom.

Every streaming endpoint comes through here: keyed sockets and streaming HTTP requests in the
limits middleware (``server/rate_limits.py``), before the handler and so before any upgrade;
conversations, whose workspace is the agent's, in ``open_conversation``; sockets that learn
their key from their first message (ElevenLabs') once they have it. A request admitted by
the middleware carries its slot (``STREAM_SLOT``), so a handler never takes a second one.

Redis down: streams are admitted without a slot (fail-open), with a warning. The cap protects
capacity, and a Redis outage must not also take down synthesis and transcription, which do
not need Redis; each process's own bounds (``max_stt_streams``, the executors) still hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from aiohttp import web

from ..billing.subscription_view import current_plan
from ..errors import Busy
from ..identity.quotas import require_headroom
from ..rest.resources import POOL, REDIS, SETTINGS, USAGE
from ..store.redis_client import redis_outage
from ..store.stream_leases import StreamLease, StreamLeases
from ..store.usage import Subject, UsageKind

__all__ = [
    "STREAM_LEASES",
    "STREAM_SLOT",
    "FailOpen",
    "admit_stream",
    "stream_leases",
    "stream_slot",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class FailOpen:
    """Runs a Redis-backed limit check, and lets the request through when Redis is away.

    The first failure of an outage is logged as a warning; for a short while after one, checks
    are skipped rather than each paying the client's retries against a server that is gone.
    """

    def __init__(self, what: str, *, pause_s: float = 2.0) -> None:
        self._what = what
        self._pause_s = pause_s
        self._skip_until = 0.0
        self._failing = False

    async def run(self, check: Callable[[], Awaitable[_T]]) -> _T | None:
        """``check()``'s result, or None when Redis cannot be reached."""
        if time.monotonic() < self._skip_until:
            return None
        try:
            result = await check()
        except Exception as exc:
            if (outage := redis_outage(exc)) is None:
                raise
            self._skip_until = time.monotonic() + self._pause_s
            if not self._failing:
                log.warning("%s not enforced while Redis is away: %s", self._what, outage.message)
            self._failing = True
            return None
        if self._failing:
            log.info("%s enforced again: Redis is back", self._what)
        self._failing = False
        return result


@dataclass
class _Admission:
    leases: StreamLeases
    fail_open: FailOpen


STREAM_LEASES: web.AppKey[_Admission] = web.AppKey("voicestream_stream_leases", _Admission)
# Set on a request the middleware admitted as a stream (with a slot, or while Redis was away).
STREAM_SLOT: web.RequestKey[bool] = web.RequestKey("voicestream_stream_slot", bool)


async def stream_leases(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after the runtime's): the leases and their renewal."""
    rt = app
    leases = StreamLeases(rt[REDIS], lease_s=rt[SETTINGS].stream_lease_seconds)
    app[STREAM_LEASES] = _Admission(leases, FailOpen("the concurrent-stream cap"))
    renewal = asyncio.create_task(leases.keep_renewing(), name="stream-lease-renewal")
    yield
    renewal.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await renewal


@contextlib.asynccontextmanager
async def stream_slot(app: web.Application, workspace_id: UUID) -> AsyncIterator[None]:
    """Hold a slot of ``workspace_id``'s stream cap for the block.

    Raises ``Busy`` (429 / close 1013) when every slot is held.
    """
    admission = app.get(STREAM_LEASES)
    if admission is None:  # an app built without the limits (a bare test app)
        yield
        return
    cap = app[SETTINGS].max_streams_per_workspace
    pool = app.get(POOL)
    plan = None if pool is None else await current_plan(pool, app[SETTINGS], workspace_id)
    if plan is not None:  # with billing, the workspace's plan may allow fewer
        cap = min(cap, plan.concurrency_limit)

    async def take() -> StreamLease | None:
        lease = await admission.leases.acquire(workspace_id, cap)
        if lease is None:
            raise Busy(
                f"the workspace has {cap} streams open, its limit; close one or retry later",
                details={"limit": cap},
            )
        return lease

    lease = await admission.fail_open.run(take)
    try:
        yield
    finally:
        if lease is not None:
            await admission.leases.release(lease)


async def admit_stream(
    request: web.Request,
    workspace_id: UUID,
    kinds: tuple[UsageKind, ...],
    stack: contextlib.AsyncExitStack,
    *,
    subject: Subject | None = None,
) -> None:
    """Admit a stream of ``workspace_id`` whose key the handler learnt itself: quota headroom
    for each of ``kinds``, then a slot held until ``stack`` closes. Nothing is taken when the
    middleware already admitted this request.

    Raises ``QuotaExceeded`` or ``Busy``.
    """
    if STREAM_SLOT in request:
        return
    rt = request.app
    for kind in kinds:
        # ``subject`` (the caller) when known: its seat's own quota counts too.
        await require_headroom(rt[USAGE], rt[SETTINGS], subject or workspace_id, kind)
    await stack.enter_async_context(stream_slot(request.app, workspace_id))
