"""The edge checks on a request that no handler should have to repeat.

``check_request_text``: the path and query string are client text like any other, and reach
SQL (an agent id in the path, ``?agent_id=`` on a listing). PostgreSQL text cannot hold NUL, so
``%00`` would fail deep inside a query as a server error; it is refused here, once.

``client_error_logger``: aiohttp's HTTP parser refuses what is not HTTP (a request line past
8190 bytes, a header with NUL, a bad chunk size) with a plain 400 before any of our code runs,
and logs each refusal with a traceback at ERROR, as if the server had failed; so does a body
that cannot be decoded when aiohttp drains what a handler left unread. Passed to the
server as its logger, this one logs those as one INFO line: a client's mistake, not ours.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from ..errors import BadRequest
from ..protocols.json_messages import invalid_text_reason

__all__ = ["CLIENT_FAULTS", "ClientErrorLogger", "check_request_text", "client_error_logger"]

# What aiohttp raises for bytes that are not valid HTTP: the parser's own errors, and the error a
# body that failed to decode (a bad chunk, "Content-Encoding: gzip" over plain bytes) raises when
# it is read, by a handler or by aiohttp draining what a handler left unread.
CLIENT_FAULTS = (HttpProcessingError, RequestPayloadError)


def check_request_text(request: web.Request) -> None:
    """BadRequest when the path or a query parameter holds text the server cannot take."""
    if (reason := invalid_text_reason(request.path)) is not None:
        raise BadRequest(f"the URL path is not acceptable: {reason}")
    for name, value in request.query.items():
        if (reason := invalid_text_reason(name) or invalid_text_reason(value)) is not None:
            shown = name if invalid_text_reason(name) is None else "?"
            raise BadRequest(
                f"query parameter {shown!r} is not acceptable: {reason}",
                details={"param": shown},
            )


class ClientErrorLogger(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, with malformed-request reports turned into one INFO line."""

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, CLIENT_FAULTS):
            # The parser's message may quote the client's bytes: a short excerpt is enough.
            self.logger.info("refused a malformed HTTP request: %.200s", exc)
            return
        super().exception(msg, *args, **kwargs)


def client_error_logger() -> ClientErrorLogger:
    return ClientErrorLogger(logging.getLogger("aiohttp.server"))
