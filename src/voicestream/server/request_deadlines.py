"""Time limits on what a client sends: the request body, and an idle connection.

A body that stops arriving would otherwise hold its handler (and whatever the handler holds)
for as long as the peer keeps the connection open. Every handler reads its body in its own way
(JSON, multipart, raw audio), so the limit is kept here, around all of them, by watching how
far the body has arrived rather than wrapping each reader: once the body is complete nothing is
watched any more, so the handler's own work (synthesis, transcription) is never cut short.

Streamed uploads (``STREAMED_UPLOADS``: ``POST /v1/files`` and the signed-URL ``PUT``) have
no total limit: a file of gigabytes over a slow line takes as long as it takes, and its
handler holds only the chunk in flight. Only the idle limit applies to them, so an upload that
keeps moving goes on and one that stalls is still cut.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Handler, Middleware

from ..config import Settings
from ..errors import RequestTimeout
from ..rest.bodies import error_response
from ..rest.files import FILES_PREFIX

__all__ = ["STREAMED_UPLOADS", "body_deadline_middleware", "server_options"]

log = logging.getLogger(__name__)

# How often, as a share of the idle timeout, a stalled body is looked at: a stall is noticed
# within 1.25 x the idle timeout, at a handful of timer callbacks per slow upload.
_CHECKS_PER_IDLE_PERIOD = 4
# (method, route) of the handlers that stream a body straight to storage: no total limit.
STREAMED_UPLOADS: frozenset[tuple[str, str]] = frozenset(
    {("POST", FILES_PREFIX), ("PUT", f"{FILES_PREFIX}/signed/upload")}
)


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``web.run_app`` / ``web.AppRunner`` that bound idle connections.

    aiohttp's keep-alive timer also runs before a connection's first request, so a peer that
    opens a connection and sends no request line, or only part of its headers, is closed too.
    """
    return {
        "keepalive_timeout": settings.keepalive_timeout_seconds,
        # After answering early (408, 413), aiohttp reads and drops the rest of the body so the
        # client sees the answer rather than a reset; a peer that sends nothing more gets no
        # longer for that than a body may pause.
        "lingering_time": settings.body_idle_timeout_seconds,
    }


def body_deadline_middleware(total_s: float, idle_s: float) -> Middleware:
    """408 ``request_timeout`` when a body is not complete within ``total_s`` seconds of the
    request's start (``STREAMED_UPLOADS`` excepted), or no byte of it arrives for ``idle_s``
    seconds."""

    @web.middleware
    async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists or request.content.is_eof():
            return await handler(request)
        route = request.match_info.route.resource
        streamed = (request.method, route.canonical if route else "") in STREAMED_UPLOADS
        watch = _BodyWatch(request.content, math.inf if streamed else total_s, idle_s)
        try:
            async with asyncio.timeout(None) as scope:
                watch.start(scope)
                return await handler(request)
        except TimeoutError:
            if watch.expired is None:
                raise  # the handler's own timeout, not ours
            log.info("%s %s: %s", request.method, request.path, watch.expired.message)
            response = error_response(watch.expired)
            # What is left of the body will not be read: the connection cannot carry another
            # request.
            response.force_close()
            return response
        finally:
            watch.stop()

    return body_deadline


class _BodyWatch:
    """Cancels the handler (through its timeout scope) when the body stalls or runs late."""

    def __init__(self, content: StreamReader, total_s: float, idle_s: float) -> None:
        self._content = content
        self._total_s = total_s
        self._idle_s = idle_s
        self._loop = asyncio.get_running_loop()
        self._started = self._last_progress = self._loop.time()
        self._seen = content.total_bytes
        self._scope: asyncio.Timeout | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.expired: RequestTimeout | None = None  # why the body was given up on

    def start(self, scope: asyncio.Timeout) -> None:
        self._scope = scope
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        now = self._loop.time()
        due = min(
            self._started + self._total_s,
            self._last_progress + self._idle_s,
            now + self._idle_s / _CHECKS_PER_IDLE_PERIOD,
        )
        self._timer = self._loop.call_at(due, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._content.is_eof() or self._scope is None:
            return  # the whole body is in: from here on the handler takes as long as it needs
        now = self._loop.time()
        if self._content.total_bytes != self._seen:
            self._seen = self._content.total_bytes
            self._last_progress = now
        if now - self._started >= self._total_s:
            self.expired = RequestTimeout(
                f"the request body did not arrive within {self._total_s:g} s",
                details={"limit": "body_timeout", "seconds": self._total_s},
            )
        elif now - self._last_progress >= self._idle_s:
            self.expired = RequestTimeout(
                f"the request body stalled: no data for {self._idle_s:g} s",
                details={"limit": "body_idle_timeout", "seconds": self._idle_s},
            )
        if self.expired is not None:
            self._scope.reschedule(now)  # cancels the handler, which then sees TimeoutError
        else:
            self._schedule()
