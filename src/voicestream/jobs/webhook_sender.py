"""The webhook sender: a background task that delivers due webhook deliveries.

Every server (``voicestream serve``) and every worker runs one (``run_webhook_sender``); they
share the work through the database. A sender claims due deliveries with ``FOR UPDATE SKIP
LOCKED`` and a lease, POSTs each with its Standard Webhooks headers, and records the attempt:

- 2xx: delivered;
- 410 Gone: the endpoint is disabled (the receiver said it is gone for good); its deliveries
  wait until a member enables it again;
- anything else (3xx included: redirects are not followed, since the URL was checked and its
  target was not), or no answer in time: retried after the next delay of
  ``VOICESTREAM_WEBHOOK_RETRY_SCHEDULE`` (±10% jitter, so failures do not retry in lockstep),
  or after ``Retry-After`` when that is longer; failed once the schedule is used up.

Delivery is at least once: a sender that dies mid-send leaves its claim to lapse and another
sends again with the same ``webhook-id``, on which receivers deduplicate.

New deliveries wake the senders through PostgreSQL ``NOTIFY`` (sent on commit); the senders
also look for due work at least every few seconds, so a lost notification (a reconnect) only
delays a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import ipaddress
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp

from ..config import Settings
from ..errors import ServiceUnavailable, VoiceStreamError
from ..resilience.circuit_breakers import CircuitOpen, breaker
from ..store import db
from ..store.secrets import SecretBox, SecretUnreadable
from ..store.webhooks import CHANNEL, AttemptOutcome, DueDelivery, WebhookRepository
from .webhook_addresses import GuardedResolver, RefusedAddress, check_address, parse_url
from .webhooks import secret_context, sign

__all__ = [
    "SenderConfig",
    "WebhookSender",
    "outcome_of",
    "retry_after_seconds",
    "run_webhook_sender",
]

log = logging.getLogger(__name__)

_POLL_S: Final = 5.0  # the longest a due delivery waits when no notification arrives
_OUTAGE_PAUSE_S: Final = 2.0
_RESPONSE_KEPT: Final = 1024  # bytes of an answer kept in the attempt log
_MAX_RETRY_AFTER_S: Final = 86_400.0
_JITTER: Final = 0.1
_USER_AGENT: Final = "voicestream-webhooks/1"


@dataclass(frozen=True, slots=True)
class SenderConfig:
    delays: tuple[float, ...]  # after attempt n (1-based) comes delays[n - 1]
    timeout_s: float
    allow_private: bool
    concurrency: int = 8

    @classmethod
    def of(cls, settings: Settings) -> SenderConfig:
        return cls(
            delays=settings.webhook_retry_delays,
            timeout_s=settings.webhook_timeout_seconds,
            allow_private=settings.webhook_allow_private,
        )

    @property
    def lease_s(self) -> float:
        # Past the attempt's own timeout with room to record it: a live sender's claim never
        # lapses under it.
        return self.timeout_s + 30.0


def _receiver_failed(exc: BaseException) -> bool:
    """A receiver that cannot be reached or does not answer in time counts against its
    circuit; an address we refuse to call (private, by our rule) says nothing about it."""
    if isinstance(exc, RefusedAddress):
        return False
    if isinstance(exc, aiohttp.ClientConnectorError):
        return not isinstance(exc.os_error, RefusedAddress)
    return isinstance(exc, (TimeoutError, aiohttp.ClientError))


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), _MAX_RETRY_AFTER_S)


def outcome_of(
    config: SenderConfig,
    attempts: int,
    *,
    duration_ms: int,
    status_code: int | None,
    error: str | None,
    response_body: str | None = None,
    retry_after: str | None = None,
    now: datetime | None = None,
) -> AttemptOutcome:
    """What an attempt's answer (or its lack) means for the delivery."""
    now = now or datetime.now(UTC)
    outcome = functools.partial(
        AttemptOutcome,
        duration_ms=duration_ms,
        status_code=status_code,
        response_body=response_body,
    )
    if status_code is not None and 200 <= status_code < 300:
        return outcome(error=None, status="succeeded")
    if status_code == 410:
        reason = "the endpoint answered 410 Gone"
        return outcome(error=error, status="failed", disable_reason=reason)
    if attempts > len(config.delays):
        why = f"{error}; " if error else ""
        return outcome(error=f"{why}gave up after {attempts} attempts", status="failed")
    delay = config.delays[attempts - 1] * random.uniform(1 - _JITTER, 1 + _JITTER)
    asked = retry_after_seconds(retry_after, now)
    if asked is not None:
        delay = max(delay, asked)
    return outcome(error=error, status="pending", next_attempt_at=now + timedelta(seconds=delay))


class WebhookSender:
    def __init__(self, repo: WebhookRepository, box: SecretBox, config: SenderConfig) -> None:
        self._repo = repo
        self._box = box
        self._config = config
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._listener: Any = None  # the pool connection LISTENing for new deliveries

    def wake(self) -> None:
        self._wake.set()

    def client_session(self) -> aiohttp.ClientSession:
        """The HTTP client attempts go through: its resolver refuses private addresses (unless
        allowed), it never reads proxy settings from the environment, and it times out."""
        resolver = None if self._config.allow_private else GuardedResolver()
        connector = aiohttp.TCPConnector(
            resolver=resolver, use_dns_cache=False, limit=self._config.concurrency
        )
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        return aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def run(self, pool: db.Pool) -> None:
        """Deliver until cancelled."""
        async with self.client_session() as session:
            try:
                while True:
                    try:
                        await self._listen(pool)
                        wait = await self._dispatch(session)
                    except (ServiceUnavailable, OSError, db.PostgresError) as exc:
                        log.warning("webhook sender: the database is unreachable (%s)", exc)
                        wait = _OUTAGE_PAUSE_S
                    except Exception as exc:
                        if db.postgres_outage(exc) is not None:
                            log.warning("webhook sender: the database is unreachable (%s)", exc)
                        else:  # a bug: say so, and keep delivering the rest
                            log.exception("webhook sender: unexpected failure")
                        wait = _OUTAGE_PAUSE_S
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    self._wake.clear()
            finally:
                for task in self._in_flight:
                    task.cancel()
                await asyncio.gather(*self._in_flight, return_exceptions=True)
                await self._unlisten(pool)

    async def _dispatch(self, session: aiohttp.ClientSession) -> float:
        """Start what is due; how long to wait before looking again."""
        free = self._config.concurrency - len(self._in_flight)
        if free <= 0:
            return _POLL_S  # a finishing send wakes the loop
        claimed = await self._repo.claim_due(free, self._config.lease_s)
        for due in claimed:
            task = asyncio.create_task(self._deliver(session, due), name=f"webhook-{due.id}")
            self._in_flight.add(task)
            task.add_done_callback(self._finished)
        if len(claimed) == free:
            return 0.0  # there may be more due already
        due_in = await self._repo.seconds_to_next_due()
        return _POLL_S if due_in is None else min(due_in, _POLL_S)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()

    async def _deliver(self, session: aiohttp.ClientSession, due: DueDelivery) -> None:
        outcome = await self.attempt(session, due)
        try:
            await self._repo.record(due, outcome)
        except (ServiceUnavailable, OSError, db.PostgresError) as exc:
            # The claim lapses and the delivery is sent again: at least once, as promised.
            log.warning("webhook delivery %s: its attempt could not be recorded (%s)", due.id, exc)
            return
        if outcome.status != "succeeded":
            log.info(
                "webhook delivery %s to %s: attempt %d %s (%s)",
                due.id,
                due.url,
                due.attempts,
                outcome.status_code or "no answer",
                outcome.status,
            )

    async def attempt(self, session: aiohttp.ClientSession, due: DueDelivery) -> AttemptOutcome:
        """Send ``due`` once (through ``client_session()``'s session) and say what follows."""
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        body: str | None = None
        retry_after: str | None = None
        try:
            secret = self._box.open(
                due.secret_sealed, context=secret_context(due.workspace_id, due.endpoint_id)
            )
            self._check_literal_host(due.url)
            timestamp = int(time.time())
            payload = due.payload.encode()
            headers = {
                "content-type": "application/json",
                "user-agent": _USER_AGENT,
                "webhook-id": due.event_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, due.event_id, timestamp, payload),
            }
            # One circuit per endpoint: receivers on a shared host (a chat service's hooks)
            # belong to different customers, and one broken receiver must not stop the rest.
            answered, retry_after, body = await breaker(f"webhook:{due.endpoint_id}").call(
                lambda: self._post(session, due.url, payload, headers),
                fails=lambda answer: answer[0] >= 500,  # the receiver is broken, not the event
                trips=_receiver_failed,
            )
            status = answered
            if not 200 <= answered < 300:
                error = f"HTTP {answered}"
        except CircuitOpen as exc:
            # Its receiver failed attempt after attempt: wait the circuit out, not a timeout.
            error = f"not sent: {exc.message}"
            retry_after = str(exc.retry_after_s)
        except RefusedAddress as exc:
            error = f"refused: {exc}"
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, RefusedAddress)
            error = f"refused: {exc.os_error}" if refused else f"cannot connect: {exc.os_error}"
        except TimeoutError:
            error = f"no answer within {self._config.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except SecretUnreadable as exc:
            error = f"the endpoint's secret cannot be read: {exc}"
        except (VoiceStreamError, ValueError) as exc:  # a URL stored unchecked (by hand)
            error = f"the endpoint's URL cannot be used: {exc}"
        duration_ms = int((time.monotonic() - started) * 1000)
        return outcome_of(
            self._config,
            due.attempts,
            duration_ms=duration_ms,
            status_code=status,
            error=error,
            response_body=body,
            retry_after=retry_after,
        )

    async def _post(
        self, session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str]
    ) -> tuple[int, str | None, str]:
        """One POST: the status, its Retry-After, and the start of its body."""
        async with session.post(
            url, data=payload, headers=headers, allow_redirects=False
        ) as answer:
            kept = await answer.content.read(_RESPONSE_KEPT)
            body = kept.decode("utf-8", "replace").replace("\x00", "")
            return answer.status, answer.headers.get("Retry-After"), body

    def _check_literal_host(self, url: str) -> None:
        """aiohttp connects to an IP literal without resolving it: check it here."""
        if self._config.allow_private:
            return
        host, _ = parse_url(url)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return  # a name: GuardedResolver checks what it resolves to
        check_address(address)

    async def _listen(self, pool: db.Pool) -> None:
        listener = self._listener
        if listener is not None and not listener.is_closed():
            return
        await self._unlisten(pool)
        conn = await pool.acquire()
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except BaseException:
            await pool.release(conn)
            raise
        self._listener = conn

    async def _unlisten(self, pool: db.Pool) -> None:
        # Forgotten first: a connection given back to the pool must never be asked anything
        # again (asyncpg raises InterfaceError on a released proxy), even if the next
        # acquire fails during an outage.
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(Exception):
            if not listener.is_closed():
                await listener.remove_listener(CHANNEL, self._notified)
        with contextlib.suppress(Exception):
            await pool.release(listener)

    def _notified(self, *_: object) -> None:
        self._wake.set()


@asynccontextmanager
async def run_webhook_sender(
    pool: db.Pool, settings: Settings, secret_key: str
) -> AsyncIterator[WebhookSender]:
    """Run a sender on ``pool`` for the block's duration (the server and each worker do)."""
    sender = WebhookSender(
        WebhookRepository(pool), SecretBox(secret_key), SenderConfig.of(settings)
    )
    task = asyncio.create_task(sender.run(pool), name="webhook-sender")
    try:
        yield sender
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
