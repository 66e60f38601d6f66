"""Delivery of "look at job X" over a Redis Stream with taskiq and taskiq-redis.

``RedisStreamBroker`` brings the consumer group (each message goes to one worker of the
group), acknowledgement after the work (taskiq's default ``when_saved``) and the reclaim of
messages a dead consumer left unacknowledged (XAUTOCLAIM). A message carries nothing but the
job's id: PostgreSQL says what the job is and whether it may run (``store/jobs.py``).

Two things are added here, because taskiq-redis's consumer loop does not do them:

- it survives Redis: its ``listen`` raises on a lost connection (a restarted redis-server) or a
  lost consumer group (one that came back without its data), which would end taskiq's
  receiver; ours re-declares the group and resumes;
- taskiq-redis only reclaims after an XREADGROUP that returned new messages, so on a quiet
  stream a dead worker's message is never reclaimed. The job's lease in PostgreSQL covers it:
  a sweeper re-publishes a job whose lease lapsed (``relay.py``), and the stream only has to
  say "look again".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any, Final

from redis.exceptions import RedisError
from taskiq import AckableMessage
from taskiq_redis import RedisStreamBroker

from ..config import Settings
from ..store.redis_client import DRIVER_INFO

__all__ = ["CONSUMER_GROUP", "TASK_NAME", "JobStreamBroker", "open_broker"]

log = logging.getLogger(__name__)

TASK_NAME: Final = "voicestream.jobs.run"
CONSUMER_GROUP: Final = "voicestream-workers"
_RECONNECT_S: Final = 0.5


class JobStreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, kept listening across Redis restarts."""

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        failing = False
        while True:
            try:
                # Again after every failure: a redis-server that lost its data lost the group.
                await self._declare_consumer_group()
                async for message in super().listen():
                    failing = False
                    yield message
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("job stream unavailable (%s); reconnecting", exc)
                failing = True
                await asyncio.sleep(_RECONNECT_S)


def open_broker(settings: Settings, redis_url: str, *, worker: bool) -> JobStreamBroker:
    """A broker on ``settings.jobs_stream``; ``worker``: this process consumes it."""
    lease_ms = int(settings.jobs_lease_seconds * 1000)
    connection: dict[str, Any] = {
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        # Built once (store/redis_client.py): else redis-py reads package metadata from disk
        # for every new connection, on the event loop.
        "driver_info": DRIVER_INFO,
    }
    broker = JobStreamBroker(
        redis_url,
        queue_name=settings.jobs_stream,
        consumer_group_name=CONSUMER_GROUP,
        # "0", not "$": a group created after the stream (Redis came back without the group)
        # still reads what is in it. Re-reading a finished job's message is harmless.
        consumer_id="0",
        # One message per read: a busy worker must not hold messages an idle one could run.
        xread_count=1,
        unacknowledged_batch_size=1,
        xread_block=1000,
        # A message unacknowledged this long belongs to a consumer that is gone (a live
        # worker renews its job's lease, and acknowledges when the job ends).
        idle_timeout=2 * lease_ms,
        unacknowledged_lock_timeout=settings.jobs_lease_seconds,
        # Acknowledged messages are never read again; keep the stream from growing forever.
        maxlen=100_000,
        approximate=True,
        **connection,
    )
    broker.is_worker_process = worker
    return broker
