"""OpenAI Realtime API over WebSocket (``/openai/v1/realtime``)."""

from __future__ import annotations

from aiohttp import web

__all__ = ["add_openai_realtime_routes"]


def add_openai_realtime_routes(app: web.Application) -> None:
    """Mount ``GET /openai/v1/realtime`` (WebSocket)."""
