"""``GET /openapi.json`` and ``GET /docs``: the API's OpenAPI document and a page that shows it.

Both are public and built once at start-up, when the router is frozen and every route is in
it. The page is plain HTML rendered here from the document (every value escaped): no script,
no stylesheet or font from a CDN, so it works on a server with no way out.

``python -m voicestream.server.api_docs`` prints the document; ``make openapi`` writes it to
``src/voicestream/rest/openapi.json``, the committed copy a test keeps current.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any, Final

from aiohttp import web

from ..rest.openapi import build_document, document_json
from .openapi_routes import OPERATIONS

__all__ = ["OPENAPI_PATH", "add_api_docs", "render_docs_page"]

OPENAPI_PATH: Final = "/openapi.json"
DOCS_PATH: Final = "/docs"


@dataclass(frozen=True)
class _Published:
    document_json: bytes
    docs_html: bytes


_PUBLISHED: Final = web.AppKey("voicestream_openapi", _Published)


def add_api_docs(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, _get_openapi)
    app.router.add_get(DOCS_PATH, _get_docs)
    app.on_startup.append(_publish)


async def _publish(app: web.Application) -> None:
    document = build_document(app, OPERATIONS)
    app[_PUBLISHED] = _Published(
        document_json=document_json(document).encode(),
        docs_html=render_docs_page(document).encode(),
    )


async def _get_openapi(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[_PUBLISHED].document_json,
        content_type="application/json",
        headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
    )


async def _get_docs(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[_PUBLISHED].docs_html,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            # Inline styles only; nothing runs and nothing loads from elsewhere.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "Referrer-Policy": "no-referrer",
        },
    )


_STYLE: Final = """
body{font:15px/1.45 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;
color:#1d1d1f}
h2{border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2.5rem}
details{border:1px solid #e3e3e3;border-radius:6px;margin:.4rem 0;padding:.3rem .6rem}
summary{cursor:pointer}
.m{display:inline-block;min-width:4.5rem;font:600 12px monospace;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.patch{color:#a60}.delete{color:#c22}.options{color:#777}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f6f6f6;padding:.6rem;overflow:auto;max-height:24rem}
.auth{color:#666;font-size:13px}
"""


def render_docs_page(document: Mapping[str, Any]) -> str:
    """The document as one HTML page: operations grouped by tag, schemas inline."""
    by_tag: dict[str, list[str]] = {}
    for path, methods in sorted(document["paths"].items()):
        for method, op in methods.items():
            for tag in op.get("tags", ["other"]):
                by_tag.setdefault(tag, []).append(_operation_html(method, path, op))
    info = document["info"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(info['title'])} API</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} API <small>{escape(info['version'])}</small></h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        f'<p>The machine-readable document: <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a> '
        "(OpenAPI 3.1).</p>",
    ]
    for tag in sorted(by_tag):
        parts.append(f"<h2>{escape(tag)}</h2>")
        parts.extend(by_tag[tag])
    schemas = document.get("components", {}).get("schemas", {})
    parts.append("<h2>Schemas</h2>")
    for name, schema in sorted(schemas.items()):
        parts.append(f'<details id="schema-{escape(name)}"><summary><code>{escape(name)}</code>')
        parts.append(f"</summary>{_pre(schema)}</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation_html(method: str, path: str, op: Mapping[str, Any]) -> str:
    security = op.get("security", [])
    schemes = sorted({name for requirement in security for name in requirement})
    if not security:
        auth = "public"
    else:
        auth = "credential: " + " or ".join(schemes)
        if {} in security:
            auth += " (optional)"
    parts = [
        f'<details><summary><span class="m {escape(method)}">{escape(method)}</span>'
        f"<code>{escape(path)}</code> — {escape(op.get('summary', ''))}</summary>",
        f'<p class="auth">{escape(auth)}</p>',
    ]
    if description := op.get("description"):
        parts.append(f"<p>{escape(description)}</p>")
    if params := op.get("parameters"):
        parts.append("<p><b>Parameters</b></p>")
        parts.append(_pre(params))
    if body := op.get("requestBody"):
        parts.append("<p><b>Request body</b></p>")
        parts.append(_pre(body.get("content", {})))
    parts.append("<p><b>Responses</b></p>")
    parts.append(_pre(op.get("responses", {})))
    parts.append("</details>")
    return "".join(parts)


def _pre(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))}</pre>"


def main() -> int:
    from ..config import load_settings
    from .app import create_app

    app = create_app(load_settings({}))
    sys.stdout.write(document_json(build_document(app, OPERATIONS)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
