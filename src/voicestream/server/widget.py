"""``GET /widget.js`` and ``GET /demo``: the embeddable voice widget and a page that shows it.

Both are public (a website embeds the script with no key). The files are read once, at import,
never on the event loop; the script is served with an ETag and a cache lifetime, so browsers
revalidate it cheaply.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from aiohttp import web

__all__ = ["get_demo", "get_widget_js"]

_STATIC = resources.files("voicestream.server") / "static"
_WIDGET_JS = (_STATIC / "widget.js").read_bytes()
_DEMO_HTML = (_STATIC / "demo.html").read_bytes()
_WIDGET_ETAG = '"' + hashlib.sha256(_WIDGET_JS).hexdigest()[:32] + '"'
# An hour: a new server version reaches visitors within one, without a cache-busting URL.
_WIDGET_CACHE = "public, max-age=3600"


async def get_widget_js(request: web.Request) -> web.Response:
    headers = {
        "Cache-Control": _WIDGET_CACHE,
        "ETag": _WIDGET_ETAG,
        # Any site may embed it; the script itself makes no request but to this server.
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }
    if _WIDGET_ETAG in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=_WIDGET_JS, content_type="application/javascript", charset="utf-8", headers=headers
    )


async def get_demo(request: web.Request) -> web.Response:
    # The page reads agent_id / ticket / transport from its own query string, so one static
    # document serves every agent and nothing from the query is ever echoed into the HTML.
    return web.Response(
        body=_DEMO_HTML,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": (
                "default-src 'self'; script-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
                "connect-src 'self' ws: wss:; media-src 'self' blob:; img-src 'self' data:"
            ),
            "Referrer-Policy": "no-referrer",
        },
    )
