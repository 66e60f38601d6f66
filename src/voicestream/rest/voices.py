"""``GET /v1/voices``: the voice catalog."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from ..engines.base import Voice
from .resources import REGISTRY

__all__ = ["VoiceList", "VoiceModel", "list_voices"]


class VoiceModel(BaseModel):
    id: str
    name: str
    language: str  # BCP-47, e.g. "en-US", "de"
    gender: str  # "female" | "male" | "neutral"
    sample_rate: int
    engine: str

    @classmethod
    def of(cls, voice: Voice) -> VoiceModel:
        return cls(
            id=voice.id,
            name=voice.name,
            language=voice.language,
            gender=voice.gender,
            sample_rate=voice.sample_rate,
            engine=voice.engine,
        )


class VoiceList(BaseModel):
    voices: list[VoiceModel]


async def list_voices(request: web.Request) -> web.Response:
    voices = request.config_dict[REGISTRY].voices()
    body = VoiceList(voices=[VoiceModel.of(v) for v in voices])
    return web.json_response(text=body.model_dump_json())
