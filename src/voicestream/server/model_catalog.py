"""``GET /v1/models``: every voice and model the server has loaded, with its engine, language,
size, licence, device and readiness (``voicestream models list`` without the file paths).

Here in server/ rather than rest/: it reads the runtime's registry, which rest/ cannot reach
without the transports/ import that ``rest.voices`` carries as known debt."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..engines.model_inventory import ModelRecord, inventory
from ..transports.context import RUNTIME

__all__ = ["list_models"]


def _public(record: ModelRecord) -> dict[str, object]:
    body = record.to_dict()
    # Where a file sits on the server's disk is the operator's business, not an API client's.
    del body["path"]
    if record.origin.startswith("models dir"):
        body["origin"] = "models dir"
    return body


async def list_models(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    # Sizes come from the file system: off the loop.
    records = await asyncio.to_thread(
        inventory, rt.registry, default_voice=rt.settings.default_voice
    )
    return web.json_response({"models": [_public(r) for r in records]})
