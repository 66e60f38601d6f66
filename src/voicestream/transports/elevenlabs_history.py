"""ElevenLabs history: past generations with their audio (``/elevenlabs/v1/history``)."""

from __future__ import annotations

from aiohttp import web

__all__ = ["add_elevenlabs_history_routes"]


def add_elevenlabs_history_routes(app: web.Application) -> None:
    """Mount ``/elevenlabs/v1/history`` and its item, audio and delete routes."""
