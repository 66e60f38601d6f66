"""Request bodies in, JSON errors out: the HTTP plumbing every handler shares.

Here in ``rest/`` (ARCHITECTURE.md, "The REST layer's shape") so that the REST resources and
the transports above them read bodies one way, with one set of errors.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from ..errors import PayloadTooLarge, ValidationFailed, VoiceStreamError
from ..protocols.json_messages import load_json, validate_model
from .resources import SETTINGS

__all__ = ["error_response", "read_json_object", "read_model", "read_query"]

M = TypeVar("M", bound=BaseModel)


def error_response(err: VoiceStreamError, *, status: int | None = None) -> web.Response:
    return web.json_response(err.to_dict(), status=status or err.http_status)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        InvalidJSON: the body is not JSON, or holds what ``load_json`` refuses (huge numbers,
            lone surrogates, NUL).
        ValidationFailed: it is JSON but not an object.
        PayloadTooLarge: the body exceeds the server's limit.
    """
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.config_dict[SETTINGS].max_upload_bytes
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes") from None
    data = load_json(raw, "request body")
    if not isinstance(data, dict):
        raise ValidationFailed("request body must be a JSON object")
    return data


async def read_model(request: web.Request, model: type[M]) -> M:
    """Read and validate a JSON body.

    Raises:
        InvalidJSON: the body is not JSON.
        ValidationFailed: it is JSON but not the expected shape; ``details`` lists the fields.
        PayloadTooLarge: the body exceeds the server's limit.
    """
    return validate_model(model, await read_json_object(request))


def read_query(request: web.Request, model: type[M]) -> M:
    """The query string validated with ``model``; an empty value counts as not given.

    Raises:
        ValidationFailed: a parameter given twice, or the query not the expected shape.
    """
    repeated = sorted({name for name in request.query if len(request.query.getall(name)) > 1})
    if repeated:
        raise ValidationFailed(
            f"repeated query parameter: {', '.join(repeated)}",
            details={"fields": [{"field": n, "message": "given more than once"} for n in repeated]},
        )
    given = {name: value for name, value in request.query.items() if value != ""}
    return validate_model(model, given, "query string")
