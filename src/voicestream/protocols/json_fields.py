"""The one kit for reading typed fields out of a parsed JSON message, for every protocol codec.

What a check asks is the same in every protocol (is the field there, of the right type, within
its limits?); how a failure is told is not: OpenAI's Realtime error event needs a ``param`` and
an ``openai_code``, Wyoming names the event type, the carriers name the dotted field. So a
check that fails describes the failure as a ``Fault`` and hands it to the ``Complaint`` the
protocol gave its ``FieldReader``, which returns the protocol's own error (with its own error
code) for the reader to raise::

    _fields = FieldReader(_complaint)      # once per protocol module
    start = _fields.obj(msg, "start")      # Fault(where="", key="start", problem="missing", …)
    sid = _fields.text(start, "streamSid", where="start", limit=200, empty=False)

``where`` names the object the field sits in (``""`` at the top level); ``Fault.path`` joins
it to the key (``start.streamSid``). Absent and ``null`` are the same everywhere: ``opt_*``
readers return None for both, the others report ``missing``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import VoiceStreamError

__all__ = ["Complaint", "Expected", "Fault", "FieldReader", "Problem"]

Problem = Literal[
    "missing",  # absent or null
    "type",  # present, of the wrong JSON type
    "empty",  # an empty string (or an empty decoded payload) where one is not allowed
    "long",  # a string (or base64 text) over ``high`` characters
    "range",  # a number outside ``low``..``high``
    "invalid",  # the right type but unreadable (base64 that does not decode)
    "unknown",  # a field the protocol does not define (``key`` is that field)
]
Expected = Literal[
    "an object",
    "a string",
    "an integer",
    "a number",
    "a count",  # a non-negative whole number, which carriers also send as digits in a string
    "true or false",
    "a base64 string",
    "names mapped to strings",
    "a known field",
]


@dataclass(frozen=True, slots=True)
class Fault:
    """One field that failed its check, for a protocol to put in its own words."""

    where: str
    key: str
    problem: Problem
    expected: Expected
    value: object = None  # what was sent
    low: int | float | None = None
    high: int | float | None = None

    @property
    def path(self) -> str:
        return f"{self.where}.{self.key}" if self.where else self.key


Complaint = Callable[[Fault], VoiceStreamError]


class FieldReader:
    """Typed field reads whose failures become the protocol's errors (see the module doc)."""

    __slots__ = ("_complain", "_empty_text", "_text_limit")

    def __init__(
        self, complain: Complaint, *, text_limit: int | None = None, empty_text: bool = True
    ) -> None:
        """``text_limit`` and ``empty_text``: the protocol's rule for a string that does not
        name its own (a carrier's ids: at most 200 characters, never empty)."""
        self._complain = complain
        self._text_limit = text_limit
        self._empty_text = empty_text

    def _fail(
        self,
        where: str,
        key: str,
        problem: Problem,
        expected: Expected,
        value: object = None,
        low: int | float | None = None,
        high: int | float | None = None,
    ) -> VoiceStreamError:
        return self._complain(Fault(where, key, problem, expected, value, low, high))

    # ---- objects ---------------------------------------------------------------------------

    def obj(self, msg: Mapping[str, Any], key: str, *, where: str = "") -> dict[str, Any]:
        value = msg.get(key)
        if value is None:
            raise self._fail(where, key, "missing", "an object")
        if not isinstance(value, dict):
            raise self._fail(where, key, "type", "an object", value)
        return value

    def opt_obj(
        self, msg: Mapping[str, Any], key: str, *, where: str = ""
    ) -> dict[str, Any] | None:
        return None if msg.get(key) is None else self.obj(msg, key, where=where)

    def only(self, obj: Mapping[str, Any], known: Collection[str], *, where: str = "") -> None:
        """Every field of ``obj`` is one of ``known``; the first unknown one (by name) fails."""
        unknown = sorted(set(obj) - set(known))
        if unknown:
            raise self._fail(where, unknown[0], "unknown", "a known field", obj[unknown[0]])

    def str_map(
        self, msg: Mapping[str, Any], key: str, *, where: str = "", limit: int = 32
    ) -> dict[str, str]:
        """At most ``limit`` names, each mapped to a string; absent or null is empty."""
        value = msg.get(key)
        if value is None:
            return {}
        if (
            not isinstance(value, dict)
            or len(value) > limit
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            raise self._fail(where, key, "type", "names mapped to strings", value, high=limit)
        return dict(value)

    # ---- strings ---------------------------------------------------------------------------

    def text(
        self,
        msg: Mapping[str, Any],
        key: str,
        *,
        where: str = "",
        limit: int | None = None,
        empty: bool | None = None,
    ) -> str:
        """A string of at most ``limit`` characters; ``empty=False`` refuses ``""`` (both
        default to the reader's rule)."""
        limit = self._text_limit if limit is None else limit
        empty = self._empty_text if empty is None else empty
        value = msg.get(key)
        if value is None:
            raise self._fail(where, key, "missing", "a string", high=limit)
        if not isinstance(value, str):
            raise self._fail(where, key, "type", "a string", value, high=limit)
        if not empty and not value:
            raise self._fail(where, key, "empty", "a string", value, high=limit)
        if limit is not None and len(value) > limit:
            raise self._fail(where, key, "long", "a string", value, high=limit)
        return value

    def opt_text(
        self,
        msg: Mapping[str, Any],
        key: str,
        *,
        where: str = "",
        limit: int | None = None,
        empty: bool | None = None,
    ) -> str | None:
        if msg.get(key) is None:
            return None
        return self.text(msg, key, where=where, limit=limit, empty=empty)

    # ---- numbers and flags -----------------------------------------------------------------

    def integer(
        self,
        msg: Mapping[str, Any],
        key: str,
        low: int,
        high: int,
        *,
        where: str = "",
        default: int | None = None,
    ) -> int:
        """A JSON integer (not a boolean) in ``low``..``high``; absent is ``default``."""
        value = msg.get(key, default)
        if value is None:
            raise self._fail(where, key, "missing", "an integer", None, low, high)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(where, key, "type", "an integer", value, low, high)
        if not low <= value <= high:
            raise self._fail(where, key, "range", "an integer", value, low, high)
        return value

    def opt_integer(
        self, msg: Mapping[str, Any], key: str, low: int, high: int, *, where: str = ""
    ) -> int | None:
        return None if msg.get(key) is None else self.integer(msg, key, low, high, where=where)

    def number(
        self, msg: Mapping[str, Any], key: str, low: float, high: float, *, where: str = ""
    ) -> float:
        """Any JSON number (not a boolean) in ``low``..``high``."""
        value = msg.get(key)
        if value is None:
            raise self._fail(where, key, "missing", "a number", None, low, high)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._fail(where, key, "type", "a number", value, low, high)
        if not low <= value <= high:  # NaN fails here too
            raise self._fail(where, key, "range", "a number", value, low, high)
        return float(value)

    def opt_number(
        self, msg: Mapping[str, Any], key: str, low: float, high: float, *, where: str = ""
    ) -> float | None:
        return None if msg.get(key) is None else self.number(msg, key, low, high, where=where)

    def opt_count(self, msg: Mapping[str, Any], key: str, *, where: str = "") -> int | None:
        """A non-negative whole number; carriers send them as strings ("chunk": "1"), so both
        are read."""
        value = msg.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            raise self._fail(where, key, "type", "a count", value, 0)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise self._fail(where, key, "type", "a count", value, 0) from None
        if number < 0:
            raise self._fail(where, key, "range", "a count", value, 0)
        return number

    def flag(
        self, msg: Mapping[str, Any], key: str, *, where: str = "", default: bool | None = None
    ) -> bool:
        """``true`` or ``false``; absent is ``default``, but an explicit null is not a flag."""
        value = msg.get(key, default)
        if value is None and key not in msg:
            raise self._fail(where, key, "missing", "true or false")
        if not isinstance(value, bool):
            raise self._fail(where, key, "type", "true or false", value)
        return value

    def opt_flag(self, msg: Mapping[str, Any], key: str, *, where: str = "") -> bool | None:
        """``true`` or ``false``; absent or null is None."""
        return None if msg.get(key) is None else self.flag(msg, key, where=where)

    # ---- binary ----------------------------------------------------------------------------

    def base64(
        self,
        msg: Mapping[str, Any],
        key: str,
        *,
        where: str = "",
        max_chars: int | None = None,
        empty: bool = True,
    ) -> bytes:
        """Bytes sent as base64 text, bounded by ``max_chars`` before anything is decoded."""
        value = msg.get(key)
        if value is None:
            raise self._fail(where, key, "missing", "a base64 string", high=max_chars)
        if not isinstance(value, str):
            raise self._fail(where, key, "type", "a base64 string", value, high=max_chars)
        if max_chars is not None and len(value) > max_chars:
            raise self._fail(where, key, "long", "a base64 string", len(value), high=max_chars)
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise self._fail(where, key, "invalid", "a base64 string") from None
        if not empty and not data:
            raise self._fail(where, key, "empty", "a base64 string")
        return data
