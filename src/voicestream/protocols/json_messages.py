"""Reading JSON from clients, the same way for every protocol and every HTTP body.

This is the edge where client text is validated once: what passes can be encoded, stored in
PostgreSQL and written back out as JSON without a later step failing on it.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import InvalidJSON, ProtocolError, ValidationFailed

__all__ = ["MAX_NUMBER_CHARS", "invalid_text_reason", "load_json", "load_object", "validate_model"]

M = TypeVar("M", bound=BaseModel)

# No field of any protocol we speak needs a longer number. Longer ones are refused before Python
# converts them: int() of a long digit string is quadratic, and past 4300 digits it raises.
MAX_NUMBER_CHARS = 100


class _BadJSON(Exception):
    """Raised from the parser hooks; json.loads lets it through untouched."""


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadJSON(f"a number longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadJSON(f"a number longer than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        # 1e999 overflows to inf, which no JSON writer can send back out.
        raise _BadJSON(f"{text} is out of range")
    return value


def _parse_constant(name: str) -> NoReturn:
    # Python's json accepts NaN and Infinity; JSON does not, and nothing downstream wants them.
    raise _BadJSON(f"{name} is not a JSON value")


def invalid_text_reason(text: str) -> str | None:
    """Why ``text`` may not enter the server, or None when it may.

    Refused: lone surrogates (``"\\ud800"`` is valid JSON but not a Unicode scalar value, so
    encoding it fails later) and NUL, which PostgreSQL text cannot hold.
    """
    if "\x00" in text:
        return "text contains a NUL character"
    if not text.isascii():  # O(1) in CPython: base64 audio and plain text skip the encode
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "text contains a lone surrogate, which is not valid Unicode"
    return None


def _check_strings(value: Any) -> None:
    # Iterative, so the walk cannot hit the recursion limit the parser itself stayed under.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if (reason := invalid_text_reason(item)) is not None:
                raise _BadJSON(reason)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def load_json(raw: str | bytes, what: str = "message") -> Any:
    """Any JSON value, with every number and string checked.

    Raises:
        InvalidJSON: not JSON (deep nesting included, which would blow the parser's stack),
            a number past ``MAX_NUMBER_CHARS`` or out of float range, NaN/Infinity, or a string
            that ``invalid_text_reason`` refuses.
    """
    try:
        value = json.loads(
            raw,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
        _check_strings(value)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidJSON(f"{what} is not valid JSON: {exc}") from None
    except _BadJSON as exc:
        raise InvalidJSON(f"{what} is not acceptable JSON: {exc}") from None
    return value


def load_object(raw: str | bytes) -> dict[str, Any]:
    """The message as a JSON object.

    Raises:
        InvalidJSON: see ``load_json``.
        ProtocolError: JSON, but not an object.
    """
    msg = load_json(raw)
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
