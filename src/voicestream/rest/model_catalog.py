"""``GET /v1/models``: every voice and model the server has loaded, with its engine, language,
size, licence, device and readiness (``voicestream models list`` without the file paths)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import BaseModel

from ..engines.model_inventory import Kind, ModelRecord, inventory
from .resources import REGISTRY, SETTINGS

__all__ = ["ModelList", "ModelModel", "list_models"]


class ModelModel(BaseModel):
    id: str  # the voice id or model name requests use
    kind: Kind
    engine: str
    language: str
    origin: str  # "package …", "models dir", "Debian flite"
    bytes: int | None  # size on disk
    license: str
    device: str  # ONNX Runtime provider or CTranslate2 device; "cpu" for the C libraries
    memory_bytes: int | None
    ready: bool
    default: bool  # the default voice / the default STT engine

    @classmethod
    def of(cls, record: ModelRecord) -> ModelModel:
        # Where a file sits on the server's disk is the operator's business, not an API
        # client's: no path, and a models-dir origin without its directory.
        origin = "models dir" if record.origin.startswith("models dir") else record.origin
        return cls(
            id=record.id,
            kind=record.kind,
            engine=record.engine,
            language=record.language,
            origin=origin,
            bytes=record.bytes,
            license=record.license,
            device=record.device,
            memory_bytes=record.memory_bytes,
            ready=record.ready,
            default=record.default,
        )


class ModelList(BaseModel):
    models: list[ModelModel]


async def list_models(request: web.Request) -> web.Response:
    registry = request.config_dict[REGISTRY]
    default_voice = request.config_dict[SETTINGS].default_voice
    # Sizes come from the file system: off the loop.
    records = await asyncio.to_thread(inventory, registry, default_voice=default_voice)
    body = ModelList(models=[ModelModel.of(r) for r in records])
    return web.json_response(text=body.model_dump_json())
