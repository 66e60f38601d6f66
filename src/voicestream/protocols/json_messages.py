"""Reading one JSON control message, the same way for every protocol."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import InvalidJSON, ProtocolError, ValidationFailed

__all__ = ["load_object", "validate_model"]

M = TypeVar("M", bound=BaseModel)


def load_object(raw: str | bytes) -> dict[str, Any]:
    """The message as a JSON object.

    Raises:
        InvalidJSON: not JSON (deep nesting included, which would blow the parser's stack).
        ProtocolError: JSON, but not an object.
    """
    try:
        msg = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidJSON(f"message is not valid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message must be a JSON object")
    return msg


def validate_model(model: type[M], data: Any, where: str = "request body") -> M:
    """``data`` as ``model``.

    Raises:
        ValidationFailed: not an object, or not the model's shape; ``details.fields`` lists each
            field's problem, and the message joins them.
    """
    if not isinstance(data, dict):
        raise ValidationFailed(f"{where} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ValidationFailed(
            "; ".join(f"{p['field']}: {p['message']}" for p in problems),
            details={"fields": problems},
        ) from None
