"""Concurrent streams per workspace, counted across processes: leases in a Redis sorted set.

Each open stream holds a lease: a member of its workspace's sorted set whose score is the
time (Redis' clock, ms) at which it lapses. Taking a slot first drops the lapsed members and
counts the rest, in one script, so two processes racing for the last slot never both get it.
The process holding leases renews them all a third of the lease time apart; one that dies
(kill -9, a lost host) stops renewing, and its slots lapse within one lease time instead of
being held for good. Ending a stream removes its member at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from redis.asyncio import Redis

__all__ = ["StreamLease", "StreamLeases"]

log = logging.getLogger(__name__)

# KEYS[1]: the workspace's set. ARGV: lease id, lease ms, cap.
# Returns 1 when the slot is taken, 0 when every slot is held.
_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

# KEYS[1]: the workspace's set. ARGV[1]: lease ms; ARGV[2..]: this process's leases in it.
# A lease that lapsed meanwhile (this process stalled past the lease time) is put back: its
# stream is still running, and counting it is the truth.
_RENEW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return #ARGV - 1
"""

# KEYS[1]: the workspace's set. The streams holding a slot now.
_COUNT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


@dataclass(frozen=True, slots=True)
class StreamLease:
    workspace_id: UUID
    id: str


class StreamLeases:
    """This process's stream leases, and the workspace counts they are part of."""

    def __init__(self, redis: Redis, *, lease_s: float, prefix: str = "vs:streams:") -> None:
        self._redis = redis
        self._lease_ms = max(1, round(lease_s * 1000))
        self._prefix = prefix
        self._held: dict[str, StreamLease] = {}
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._count = redis.register_script(_COUNT)

    @property
    def renew_every_s(self) -> float:
        return self._lease_ms / 3000

    def _key(self, workspace_id: UUID) -> str:
        return f"{self._prefix}{workspace_id}"

    async def acquire(self, workspace_id: UUID, cap: int) -> StreamLease | None:
        """A slot of ``workspace_id``'s ``cap``, or None when all are held.

        Raises ServiceUnavailable when Redis cannot be reached.
        """
        lease = StreamLease(workspace_id, uuid.uuid4().hex)
        # Held before the call: a cancellation mid-call must not leave an unrenewed member
        # that nobody releases (release of a missing member is harmless).
        self._held[lease.id] = lease
        try:
            taken = await self._acquire(
                keys=[self._key(workspace_id)], args=[lease.id, self._lease_ms, cap]
            )
        except BaseException:
            await self._forget(lease)
            raise
        if not taken:
            del self._held[lease.id]
            return None
        return lease

    async def release(self, lease: StreamLease) -> None:
        """Give the slot back. Never raises: a lease that cannot be removed lapses by itself."""
        await self._forget(lease)

    async def _forget(self, lease: StreamLease) -> None:
        self._held.pop(lease.id, None)
        try:
            await asyncio.shield(self._redis.zrem(self._key(lease.workspace_id), lease.id))
        except Exception as exc:  # Redis away: the member lapses within one lease time
            log.info("stream lease %s not released (%s); it lapses by itself", lease.id, exc)

    async def count(self, workspace_id: UUID) -> int:
        """Streams holding a slot of ``workspace_id`` now, in every process."""
        return int(await self._count(keys=[self._key(workspace_id)]))

    async def renew(self) -> int:
        """Push out the lapse time of every lease this process holds; returns how many."""
        by_workspace: dict[UUID, list[str]] = {}
        for lease in list(self._held.values()):
            by_workspace.setdefault(lease.workspace_id, []).append(lease.id)
        renewed = 0
        for workspace_id, ids in by_workspace.items():
            renewed += int(
                await self._renew(keys=[self._key(workspace_id)], args=[self._lease_ms, *ids])
            )
        return renewed

    async def keep_renewing(self) -> None:
        """Renew until cancelled; a Redis outage is logged once and ridden out."""
        failing = False
        while True:
            await asyncio.sleep(self.renew_every_s)
            if not self._held:
                continue
            try:
                await self.renew()
            except Exception as exc:  # the outage is reported where it is felt; try again
                if not failing:
                    log.warning("cannot renew stream leases: %s", exc)
                failing = True
                continue
            failing = False
