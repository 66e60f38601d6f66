"""Telnyx and Vonage media-stream framings, bridged to the same conversation core as Twilio."""

from __future__ import annotations

from aiohttp import web

__all__ = ["add_telephony_routes"]


def add_telephony_routes(app: web.Application) -> None:
    """Mount the Telnyx and Vonage call sockets."""
