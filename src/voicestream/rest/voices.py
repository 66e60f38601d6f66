"""``GET /v1/voices``: the voice catalog."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from ..transports.context import RUNTIME

__all__ = ["list_voices"]


async def list_voices(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    voices = [asdict(v) for v in rt.registry.voices()]
    return web.json_response({"voices": voices})
