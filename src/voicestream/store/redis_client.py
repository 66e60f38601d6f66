"""The Redis client used by the server (rate limits, sessions, pub/sub)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.driver_info import DriverInfo

__all__ = ["DRIVER_INFO", "create_redis"]

# Built once, at import: left to itself redis-py reads its package metadata from disk for
# every client and every new connection (CLIENT SETINFO), i.e. on the event loop.
DRIVER_INFO = DriverInfo()


def create_redis(url: str, *, decode_responses: bool = False) -> Redis:
    """A pooled asyncio client for ``url`` (redis://, rediss:// or unix://).

    Connecting is lazy; the connect timeout keeps a dead server from stalling a request
    for the OS default (minutes), and the health check replaces connections that a
    restarted server or a NAT silently dropped.
    """
    return Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        client_name="voicestream",
        driver_info=DRIVER_INFO,
    )
