"""Wyoming (Home Assistant's voice protocol) on an optional TCP port."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

__all__ = ["wyoming_server"]


async def wyoming_server(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: serve Wyoming while the app runs, when a port is configured."""
    yield
