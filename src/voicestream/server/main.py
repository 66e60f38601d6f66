"""Process entry for ``voicestream serve``: uvloop, logging, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import sys

from aiohttp import web

from ..config import Settings
from ..observability.log_redaction import install_log_redaction
from .app import create_app
from .request_deadlines import server_options

__all__ = ["run_server"]


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # optional on platforms without it; asyncio's loop still works
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per request is noise at audio rates; Prometheus counts requests instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Keys and tickets reach log lines through libraries too (aiohttp quotes subprotocols).
    install_log_redaction()


def run_server(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; embedded services stop with the server."""
    configure_logging(settings.log_level)
    install_uvloop()
    app = create_app(settings)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=lambda msg: logging.getLogger("voicestream").info(
            "listening on http://%s:%d", settings.host, settings.port
        ),
        shutdown_timeout=10,
        **server_options(settings),
    )
