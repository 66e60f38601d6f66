"""ElevenLabs streaming sockets: multi-stream-input TTS and realtime STT."""

from __future__ import annotations

from aiohttp import web

__all__ = ["add_elevenlabs_stream_routes"]


def add_elevenlabs_stream_routes(app: web.Application) -> None:
    """Mount the ElevenLabs multi-context TTS and realtime STT sockets."""
