"""The Redis client used by the server (rate limits, sessions, pub/sub)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from voicestream.errors import ServiceUnavailable
from voicestream.store._errors import connection_failed, unavailable

__all__ = ["DRIVER_INFO", "create_redis", "redis_outage"]

# Built once, at import: left to itself redis-py reads its package metadata from disk for
# every client and every new connection (CLIENT SETINFO), i.e. on the event loop.
DRIVER_INFO = DriverInfo()

# A restarted redis-server is back within a second (see store/supervisor.py): a few quick
# retries ride that out, while a real outage still fails the call in well under a second
# instead of redis-py's default of up to 10 s of backoff per call.
_RETRIES = 3
_BACKOFF = ExponentialBackoff(cap=0.4, base=0.05)


def redis_outage(exc: BaseException, *, os_errors: bool = True) -> ServiceUnavailable | None:
    """``exc``, raised by a Redis call, as ServiceUnavailable when the server is down.

    ``os_errors=False`` for an exception of unknown origin: a bare OSError or TimeoutError
    then proves nothing about Redis.
    """
    if isinstance(exc, ServiceUnavailable):
        return exc
    if isinstance(exc, RedisConnectionError | RedisTimeoutError) or (
        os_errors and connection_failed(exc)
    ):
        return unavailable("Redis")
    return None


class _Redis(Redis):
    """A client whose commands report a lost server as ServiceUnavailable (503 / 1013)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            # redis-py leaves this method unannotated.
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except Exception as exc:
            if (err := redis_outage(exc)) is not None and err is not exc:
                raise err from exc
            raise


def create_redis(url: str, *, decode_responses: bool = False) -> Redis:
    """A pooled asyncio client for ``url`` (redis://, rediss:// or unix://).

    Connecting is lazy; the connect timeout keeps a dead server from stalling a request
    for the OS default (minutes), and the health check replaces connections that a
    restarted server or a NAT silently dropped. A dropped connection is reconnected and the
    command retried; if the server stays away, the command raises ServiceUnavailable.
    """
    client: Redis = _Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        client_name="voicestream",
        driver_info=DRIVER_INFO,
        retry=Retry(_BACKOFF, _RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
    )
    return client
