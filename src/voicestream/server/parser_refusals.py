"""JSON answers for requests aiohttp's HTTP parser refuses before any route or middleware runs.

A request line past 8190 bytes, an over-long or NUL-bearing header, a bad chunk size: aiohttp
answers these itself, in plain text that quotes the client's bytes back, because the request never
reaches the application (aio-libs/aiohttp#3287: there is no hook for it). The house rule is a JSON
``{"error": {"code", "message"}}`` body on every error, so the one place that builds those
answers, ``RequestHandler.handle_error``, is overridden here.

aiohttp builds its per-connection handler from the name ``RequestHandler`` in
``aiohttp.web_server`` and offers no way to pass another class (``handler_args`` only reach the
constructor), so ``install_json_parser_refusals`` points that name at the subclass. That covers
``web.run_app`` and ``web.AppRunner`` alike, for every server in the process.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web, web_server
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

__all__ = ["JsonErrorRequestHandler", "install_json_parser_refusals", "refusal_body"]

_TOO_MANY_HEADERS = "Too many headers received"  # aiohttp's own wording, both parsers


def _is_request_target(line: object) -> bool:
    """Whether the line the parser refused as too long is the request line, not a header.

    The C parser reports the URL from its bytearray buffer and header names and values as
    bytes; the pure-Python parser reports whole lines, so the request line starts with its
    method. A guess wrong either way still answers a 4xx, only with the sibling status.
    """
    if isinstance(line, bytearray):
        return True
    if isinstance(line, bytes):
        method, _, rest = line.partition(b" ")
        return bool(rest) and method.isalpha() and method.isupper()
    return False


def refusal_body(status: int, exc: BaseException | None) -> tuple[int, dict[str, object]]:
    """The status and JSON body for what ``handle_error`` was asked to answer."""
    if isinstance(exc, LineTooLong):
        if _is_request_target(exc.args[0] if exc.args else None):
            status, code, message = 414, "uri_too_long", "the request line is too long"
        else:
            status, code, message = 431, "headers_too_large", "a header field is too long"
    elif isinstance(exc, BadHttpMessage) and exc.message == _TOO_MANY_HEADERS:
        status, code, message = 431, "headers_too_large", "too many header fields"
    elif isinstance(exc, BadHttpMessage) or (400 <= status < 500):
        # The parser's message quotes the client's bytes; the status says enough.
        status, code, message = 400, "bad_request", "malformed HTTP request"
    elif status == HTTPStatus.GATEWAY_TIMEOUT:
        code, message = "timeout", "the request took too long"
    else:
        status, code, message = 500, "internal_error", "internal server error"
    return status, {"error": {"code": code, "message": message}}


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own refusals in the house JSON shape."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's version logs (through the server's client_error_logger) and refuses when
        # part of a response is already out; its plain-text answer itself is not used.
        super().handle_error(request, status, exc, message)
        status, body = refusal_body(status, exc)
        response = web.json_response(body, status=status)
        response.force_close()  # the parser cannot frame another request on this connection
        return response


def install_json_parser_refusals() -> None:
    """Make every aiohttp server in this process answer parser refusals as JSON (idempotent)."""
    # The name is aiohttp.web_server's own import, not an export: rebinding it is the point.
    web_server.RequestHandler = JsonErrorRequestHandler  # type: ignore[attr-defined]
