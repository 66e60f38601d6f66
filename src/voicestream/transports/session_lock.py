"""One live connection per conversation session, across every server process.

A resumable session id lets a client reconnect; without a lock two clients holding it could
both be connected at once, each session writing its own turns into one conversation. The
connection that opens or resumes a session takes ``vs:convai:live:<session id>`` with
``SET NX``; a second one is refused (``Conflict``) until the first lets go. The lock carries a
short TTL, refreshed while the connection lives, so a process that dies without releasing it
blocks the session for seconds, not for the day its state is kept.

A client that reconnects right after dropping usually arrives before the server has finished
closing the old connection, so a resume waits a moment for the lock before it is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

import redis.exceptions

from ..errors import Conflict

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["LIVE_LOCK_TTL_S", "LiveLock"]

log = logging.getLogger(__name__)

LIVE_LOCK_TTL_S = 30
_HANDOVER_WAIT_S = 3.0  # a closing connection lets go within milliseconds to a second
_HANDOVER_POLL_S = 0.05
_REFRESH_EVERY_S = LIVE_LOCK_TTL_S / 3
# Only the holder's token may extend or drop the lock: after an expiry another connection may
# hold it, and that one's lock must survive the late holder's refresh or release.
_REFRESH = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def _key(session_id: str) -> str:
    return f"vs:convai:live:{session_id}"


class LiveLock:
    """The lock a connected conversation holds on its session id."""

    def __init__(self, redis_client: redis.asyncio.Redis, session_id: str) -> None:
        self._redis = redis_client
        self._key = _key(session_id)
        self._token = uuid.uuid4().hex
        self._refresher: asyncio.Task[None] | None = None

    @classmethod
    async def acquire(
        cls, redis_client: redis.asyncio.Redis, session_id: str, *, wait: bool = False
    ) -> LiveLock:
        """Raises ``Conflict`` while another connection holds the session (after waiting a
        moment for it to let go, with ``wait``)."""
        lock = cls(redis_client, session_id)
        deadline = time.monotonic() + (_HANDOVER_WAIT_S if wait else 0.0)
        while not await redis_client.set(lock._key, lock._token, nx=True, ex=LIVE_LOCK_TTL_S):
            if time.monotonic() < deadline:
                await asyncio.sleep(_HANDOVER_POLL_S)
                continue
            raise Conflict(
                "this conversation is already connected elsewhere; close that connection first",
                details={"retry_after_seconds": LIVE_LOCK_TTL_S},
            )
        return lock

    def keep_alive(self) -> None:
        """Refresh the TTL in the background until ``release``."""
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh(), name="convai-live-lock")

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(_REFRESH_EVERY_S)
            try:
                await self._redis.eval(_REFRESH, 1, self._key, self._token, LIVE_LOCK_TTL_S)
            except (redis.exceptions.RedisError, OSError) as exc:
                # Redis down: the lock lapses with it; the conversation itself goes on.
                log.warning("could not refresh a conversation's live lock: %s", exc)

    async def release(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            # wait() does not re-raise the refresher's own cancellation, only ours.
            await asyncio.wait([self._refresher])
            self._refresher = None
        try:
            await self._redis.eval(_RELEASE, 1, self._key, self._token)
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("could not release a conversation's live lock (it expires): %s", exc)
