"""Small pieces every repository shares: ids from URLs, timestamps, text and page limits."""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

from voicestream.errors import NotFound

__all__ = ["MAX_LIST", "Id", "clean", "iso", "limit_rows", "parse_id"]

MAX_LIST: Final = 500

Id = UUID | str


def parse_id(value: Id, what: str = "object") -> UUID:
    """``value`` as a UUID; a malformed id is an unknown one (``NotFound``)."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound(f"no {what} with id {value!r}") from None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def clean(text: str) -> str:
    return text.replace("\x00", "")  # PostgreSQL text cannot hold NUL


def limit_rows(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIST))
