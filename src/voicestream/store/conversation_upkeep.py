"""The background work that keeps stored conversations true to what is live.

Three loops for the lifetime of the server's conversation repository:

- replay: writes queued in the outbox during a database outage are stored, in order, as
  soon as the database answers again (retried with backoff until then);
- heartbeat: the conversations whose sockets this process holds are marked as seen;
- sweep: at start-up and then periodically, ``active`` conversations nobody has marked for
  a while (their process was killed, or crashed) are closed as ``abandoned``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from voicestream.errors import ServiceUnavailable
from voicestream.store import db
from voicestream.store.conversation_outbox import ConversationOutbox
from voicestream.store.conversations import ConversationRepository

__all__ = ["STALE_AFTER_HEARTBEATS", "open_conversations"]

log = logging.getLogger(__name__)

# A conversation is abandoned once this many heartbeats in a row were missed: one late
# heartbeat (a busy loop, a slow database) must not close a live conversation.
STALE_AFTER_HEARTBEATS = 4
_FIRST_RETRY_S = 0.2
_MAX_RETRY_S = 5.0


@contextlib.asynccontextmanager
async def open_conversations(
    pool: db.Pool, *, outbox_dir: Path, heartbeat_s: float
) -> AsyncIterator[ConversationRepository]:
    """A conversation repository with its outbox, heartbeat and sweep running."""
    outbox = ConversationOutbox(outbox_dir)
    await outbox.open()
    repo = ConversationRepository(pool, outbox=outbox)
    tasks = [
        asyncio.create_task(_replay(repo, outbox), name="conversation-outbox"),
        asyncio.create_task(_upkeep(repo, heartbeat_s), name="conversation-upkeep"),
    ]
    try:
        yield repo
    finally:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("conversation upkeep failed", exc_info=result)
        if len(outbox):
            log.warning(
                "%d conversation write(s) still queued in %s; the next start stores them",
                len(outbox),
                outbox_dir,
            )


async def _replay(repo: ConversationRepository, outbox: ConversationOutbox) -> None:
    delay = _FIRST_RETRY_S
    while True:
        await outbox.wait_pending()
        try:
            await repo.replay_outbox()
        except ServiceUnavailable:
            pass
        except Exception:
            # A full disk under the outbox rewrite, a driver surprise: this loop ending would
            # leave every queued write unstored for good, so say it loudly and try again.
            log.exception("replaying the conversation outbox failed; retrying in %.1fs", delay)
        else:
            log.info("database reachable again: queued conversation writes stored")
            delay = _FIRST_RETRY_S
            continue
        await asyncio.sleep(delay)
        delay = min(delay * 2, _MAX_RETRY_S)


async def _upkeep(repo: ConversationRepository, heartbeat_s: float) -> None:
    stale_after_s = heartbeat_s * STALE_AFTER_HEARTBEATS
    while True:
        try:
            await repo.heartbeat()
            closed = await repo.sweep_abandoned(stale_after_s)
        except ServiceUnavailable as exc:
            log.debug("conversation upkeep skipped: %s", exc)
        except Exception:
            # A statement timeout on a locked row and the like: a missed heartbeat is
            # harmless, a loop that stopped heartbeating gets live conversations swept.
            log.exception("conversation heartbeat or sweep failed; trying again next beat")
        else:
            if closed:
                log.info("closed %d abandoned conversation(s)", closed)
        await asyncio.sleep(heartbeat_s)
