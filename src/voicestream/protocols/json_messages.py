"""Reading one JSON control message, the same way for every protocol."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidJSON, ProtocolError

__all__ = ["load_object"]


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
