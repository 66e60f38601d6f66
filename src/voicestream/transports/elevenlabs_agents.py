"""ElevenLabs Agents WebSocket (``/elevenlabs/v1/convai/conversation``)."""

from __future__ import annotations

from aiohttp import web

__all__ = ["add_elevenlabs_agents_routes"]


def add_elevenlabs_agents_routes(app: web.Application) -> None:
    """Mount the ElevenLabs Agents conversation socket and its signed-URL endpoint."""
