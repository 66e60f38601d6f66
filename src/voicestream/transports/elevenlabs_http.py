"""What the ElevenLabs REST routes share: the ``enable_logging`` flag and streaming a response.

Text-to-speech (``elevenlabs_rest.py``) and text-to-dialogue (``elevenlabs_dialogue.py``) write
their audio the same way: headers with the first piece (so a failure before any audio is still
an ElevenLabs JSON error), usage charged before and given back if synthesis fails, history
only for a whole send.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import web

from ..errors import ValidationFailed, VoiceStreamError
from ..identity.quotas import Charge
from .context import principal_of

__all__ = ["HistoryRecord", "enable_logging", "stream_out"]

log = logging.getLogger(__name__)


class HistoryRecord(Protocol):
    """A generation's history row, written once all of its audio reached the client."""

    async def record(self) -> None: ...


def enable_logging(request: web.Request) -> bool:
    """The ``enable_logging`` query flag (default true); false keeps the request out of history."""
    raw = request.query.get("enable_logging", "true").strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise ValidationFailed(
            f"enable_logging must be true or false; got {raw!r}",
            details={"fields": [{"field": "enable_logging", "message": "not a boolean"}]},
        )
    return raw in ("true", "1")


async def stream_out(
    request: web.Request,
    content_type: str,
    pieces: AsyncIterator[bytes],
    headers: dict[str, str],
    charge: Charge,
    history: HistoryRecord | None = None,
) -> web.StreamResponse:
    """Write pieces as they come; headers go with the first, so an early failure is JSON.

    ``charge`` (taken before any audio was made) stands once the audio is made, before the end
    of the response so a client that asks for its usage next sees it, also when the client
    hung up mid-stream; a synthesis failure gives it back. ``history`` is recorded after it,
    but only when every piece was sent.
    """
    response: web.StreamResponse | None = None
    try:
        async with charge.covering(principal_of(request).workspace_id):
            async for data in pieces:
                if response is None:
                    response = web.StreamResponse(headers={"Content-Type": content_type, **headers})
                    response.enable_chunked_encoding()
                    await response.prepare(request)
                if data:
                    await response.write(data)
    except ConnectionError:
        log.debug("elevenlabs client went away mid-stream")
        assert response is not None
        return response
    except VoiceStreamError as err:
        if response is None:
            raise
        log.warning("elevenlabs stream aborted after audio started: %s", err)
        raise ConnectionResetError("synthesis failed mid-stream") from err
    if history is not None:
        await history.record()
    if response is None:
        response = web.StreamResponse(headers={"Content-Type": content_type, **headers})
        await response.prepare(request)
    await response.write_eof()
    return response
