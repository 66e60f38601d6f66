"""Request rate limits in Redis: one Lua script, GCRA (the generic cell rate algorithm).

Why GCRA rather than a sliding-window counter: it keeps one number per caller (the
"theoretical arrival time", TAT), decides and updates it in a single atomic step, refills
continuously instead of at window edges (no double burst where two windows meet), and yields
exact answers for every header a client wants: how many requests are left, when the next one
is allowed (``Retry-After``) and when the whole burst is back (``RateLimit-Reset``).

With an emission interval ``T`` (60 s / requests per minute) and a burst ``B``, a request is
allowed when ``TAT + T - B*T <= now``; it then moves TAT to ``max(TAT, now) + T``. The clock
is Redis' own (``TIME``), so every server process sharing the Redis agrees on it, whatever
their own clocks say. The key expires when the caller's burst is whole again: an idle
caller costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

__all__ = ["RateDecision", "RequestRates"]

# Milliseconds throughout: integer arithmetic in Lua, and a fine enough grain for any rate
# expressed per minute.
_GCRA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now}
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int  # the burst: requests that may be made at once from idle
    remaining: int  # requests that may still be made right now
    retry_after_s: int  # 0 when allowed; else whole seconds until one more is allowed
    reset_s: int  # whole seconds until the full burst is available again

    def headers(self) -> dict[str, str]:
        """The IETF ``RateLimit-*`` fields (draft-ietf-httpapi-ratelimit-headers), plus
        ``Retry-After`` on a refusal."""
        fields = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            fields["Retry-After"] = str(self.retry_after_s)
        return fields


class RequestRates:
    """One bucket per caller name, counted in the Redis every server process shares."""

    def __init__(self, redis: Redis, *, prefix: str = "vs:rate:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_GCRA)

    async def hit(self, caller: str, *, per_minute: int, burst: int) -> RateDecision:
        """Count one request of ``caller`` and say whether it is allowed.

        Raises ServiceUnavailable when Redis cannot be reached (the client's own mapping).
        """
        return await self.hit_within(caller, window_s=60, count=per_minute, burst=burst)

    async def hit_within(
        self, caller: str, *, window_s: float, count: int, burst: int
    ) -> RateDecision:
        """``hit`` at a rate of ``count`` per ``window_s`` seconds: a failure limit such as
        "10 wrong passwords in 15 minutes" is ``count=10, burst=10, window_s=900``."""
        interval_ms = max(1, round(window_s * 1000 / count))
        allowed, remaining, wait_ms, backlog_ms = await self._script(
            keys=[self._prefix + caller], args=[interval_ms, burst]
        )
        return RateDecision(
            allowed=bool(allowed),
            limit=burst,
            remaining=int(remaining),
            # Rounded up: a client that waits what it was told must find the request allowed.
            retry_after_s=max(1, math.ceil(int(wait_ms) / 1000)) if not allowed else 0,
            reset_s=math.ceil(int(backlog_ms) / 1000),
        )

    async def forget(self, caller: str) -> None:
        """Give ``caller`` its whole burst back (a sign-in that succeeded clears its failures)."""
        await self._redis.delete(self._prefix + caller)
