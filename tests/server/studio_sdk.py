"""What the ElevenLabs Studio SDK tests share: an owner key in a workspace of its own, and the
``studio_convert`` jobs that key's workspace has started."""

from __future__ import annotations

from typing import Any

import httpx
from elevenlabs import AsyncElevenLabs

from fixtures_services import unique_name
from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository
from voicestream.transports.elevenlabs_rest import PREFIX


async def new_owner_key(server: Any, prefix: str) -> str:
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=unique_name(prefix), role="owner"
    )
    return key


def sdk_client(server: Any, key: str, http: httpx.AsyncClient) -> AsyncElevenLabs:
    return AsyncElevenLabs(base_url=f"{server.url}{PREFIX}", api_key=key, httpx_client=http)


async def conversion_jobs(server: Any, http: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    r = await http.get(
        f"{server.url}/v1/jobs",
        params={"type": "studio_convert"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    return list(r.json()["data"])
