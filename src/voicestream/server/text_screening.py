"""Every request's speech passes its workspace's content policy (``moderation/``).

The middleware gives each request a text screen (``engines.tts_stream.TEXT_SCREEN``) that every
``TTSStream`` the request opens picks up, so no TTS route, socket or compatible protocol can
forget moderation. The workspace is looked up when the first text is screened, not when the
request arrives: a socket may learn its key from its first message
(``SPEAKING_WORKSPACE``), after the stream was opened.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from ..engines.tts_stream import TEXT_SCREEN
from ..identity.request_principal import optional_principal
from ..rest.moderation import MODERATOR, SPEAKING_WORKSPACE

__all__ = ["text_screening_middleware"]


@web.middleware
async def text_screening_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    moderator = request.config_dict.get(MODERATOR)
    if moderator is None:  # before the runtime is up (a failed start)
        return await handler(request)

    async def screen(text: str) -> str:
        principal = optional_principal(request)
        workspace_id = (
            principal.workspace_id if principal is not None else request.get(SPEAKING_WORKSPACE)
        )
        await moderator.check(workspace_id, text, source="tts")
        return text

    token = TEXT_SCREEN.set(screen)
    try:
        return await handler(request)
    finally:
        TEXT_SCREEN.reset(token)
