"""Speech history: every logged generation with its audio (ElevenLabs' ``/v1/history``).

Every read and delete takes the workspace id and filters on it: another workspace's item is
``NotFound``, exactly like an id that never existed. The audio sits in its own table, so a
listing never touches it; an item and its audio are written in one transaction, so there is
never an item without audio or audio without an item.
"""

from __future__ import annotations

import builtins
import json
import re
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store._records import clean, iso
from voicestream.store.keys import Principal

__all__ = [
    "MAX_PAGE_SIZE",
    "HistoryItem",
    "HistoryPage",
    "HistoryRepository",
    "NewHistoryItem",
    "is_history_id",
    "new_history_id",
]

MAX_PAGE_SIZE: Final = 1000  # ElevenLabs' own cap on page_size
_ID_ALPHABET: Final = string.ascii_letters + string.digits
_ID_LENGTH: Final = 20  # the length of ElevenLabs' history item ids
_ID_FORMAT = re.compile(r"[A-Za-z0-9]{1,64}")

SortDirection = Literal["asc", "desc"]
# Who generated: a principal, or (workspace id, api key id or None).
Subject = Principal | tuple[UUID, UUID | None]

_COLUMNS = """
    id, workspace_id, api_key_id, request_id, voice_id, voice_name, voice_category, model_id,
    text, character_count_change_from, character_count_change_to, output_format, content_type,
    source, settings, audio_bytes, created_at
"""


def new_history_id() -> str:
    """A fresh item id in ElevenLabs' style: 20 random letters and digits (119 bits)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def is_history_id(value: str) -> bool:
    """Whether ``value`` could be an item id at all (letters and digits, at most 64)."""
    return isinstance(value, str) and _ID_FORMAT.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class NewHistoryItem:
    """What a finished generation records; the counts and the time are the repository's."""

    voice_id: str
    text: str
    output_format: str
    content_type: str
    voice_name: str | None = None
    voice_category: str | None = None
    model_id: str | None = None
    settings: Mapping[str, Any] | None = None
    source: str = "TTS"
    request_id: str | None = None
    id: str | None = None  # made up front when the id must go out before the audio


@dataclass(frozen=True, slots=True)
class HistoryItem:
    id: str
    workspace_id: UUID
    api_key_id: UUID | None
    request_id: str | None
    voice_id: str
    voice_name: str | None
    voice_category: str | None
    model_id: str | None
    text: str
    character_count_change_from: int
    character_count_change_to: int
    output_format: str
    content_type: str
    source: str
    settings: dict[str, Any] | None
    audio_bytes: int
    created_at: datetime

    @property
    def characters(self) -> int:
        return self.character_count_change_to - self.character_count_change_from

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (ids and times as strings)."""
        return {
            "id": self.id,
            "request_id": self.request_id,
            "voice_id": self.voice_id,
            "voice_name": self.voice_name,
            "voice_category": self.voice_category,
            "model_id": self.model_id,
            "text": self.text,
            "character_count_change_from": self.character_count_change_from,
            "character_count_change_to": self.character_count_change_to,
            "output_format": self.output_format,
            "content_type": self.content_type,
            "source": self.source,
            "settings": self.settings,
            "audio_bytes": self.audio_bytes,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: builtins.list[HistoryItem]
    has_more: bool


def _item(row: db.Record) -> HistoryItem:
    settings = row["settings"]
    return HistoryItem(
        id=row["id"],
        workspace_id=row["workspace_id"],
        api_key_id=row["api_key_id"],
        request_id=row["request_id"],
        voice_id=row["voice_id"],
        voice_name=row["voice_name"],
        voice_category=row["voice_category"],
        model_id=row["model_id"],
        text=row["text"],
        character_count_change_from=row["character_count_change_from"],
        character_count_change_to=row["character_count_change_to"],
        output_format=row["output_format"],
        content_type=row["content_type"],
        source=row["source"],
        # No JSON codec is registered on the pool: jsonb arrives as its text.
        settings=json.loads(settings) if isinstance(settings, str) else settings,
        audio_bytes=row["audio_bytes"],
        created_at=row["created_at"],
    )


def _ids(subject: Subject) -> tuple[UUID, UUID | None]:
    if isinstance(subject, Principal):
        return subject.workspace_id, subject.key_id
    return subject


def _field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}", details={"fields": [{"field": field, "message": message}]}
    )


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _not_found(item_id: str) -> NotFound:
    return NotFound(f"no history item with id {item_id!r}")


class HistoryRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def add(self, subject: Subject, new: NewHistoryItem, audio: bytes) -> HistoryItem:
        """Record a finished generation and its audio, both or nothing.

        The character counts are the workspace's billed TTS characters (``usage_records``)
        after and before this generation, so record the usage first. Raises ValidationFailed
        for a malformed id or empty fields.
        """
        item_id = new.id if new.id is not None else new_history_id()
        if not is_history_id(item_id):
            raise _field_error("id", "letters and digits only, at most 64")
        for name in ("voice_id", "output_format", "content_type", "source"):
            if not getattr(new, name):
                raise _field_error(name, "must not be empty")
        workspace_id, api_key_id = _ids(subject)
        characters = len(new.text)
        async with self._pool.acquire() as conn, conn.transaction():
            billed = await conn.fetchval(
                "SELECT coalesce(sum(quantity), 0)::bigint FROM usage_records "
                "WHERE workspace_id = $1 AND kind = 'tts_characters'",
                workspace_id,
            )
            after = max(int(billed), characters)
            row = await conn.fetchrow(
                f"""
                INSERT INTO history_items (
                    id, workspace_id, api_key_id, request_id, voice_id, voice_name,
                    voice_category, model_id, text, character_count_change_from,
                    character_count_change_to, output_format, content_type, source, settings,
                    audio_bytes
                ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                          $15::jsonb, $16)
                RETURNING {_COLUMNS}
                """,
                item_id,
                workspace_id,
                api_key_id,
                new.request_id,
                clean(new.voice_id),
                clean(new.voice_name) if new.voice_name is not None else None,
                new.voice_category,
                new.model_id,
                clean(new.text),
                after - characters,
                after,
                new.output_format,
                new.content_type,
                new.source,
                json.dumps(dict(new.settings)) if new.settings is not None else None,
                len(audio),
            )
            await conn.execute(
                "INSERT INTO history_audio (history_item_id, audio) VALUES ($1, $2)",
                item_id,
                audio,
            )
        return _item(row)

    async def list(
        self,
        workspace_id: UUID,
        *,
        page_size: int = 100,
        start_after: str | None = None,
        voice_id: str | None = None,
        model_id: str | None = None,
        date_before: datetime | None = None,
        date_after: datetime | None = None,
        sort_direction: str = "desc",
        search: str | None = None,
        source: str | None = None,
    ) -> HistoryPage:
        """One page, newest first unless ``sort_direction="asc"``, without audio.

        ``start_after`` is the last id of the previous page. ``date_before`` is exclusive,
        ``date_after`` inclusive; ``search`` matches the text or the voice name, ignoring
        case. Raises ValidationFailed for a page size outside 1..1000, an unknown direction
        or a ``start_after`` id that is not in this workspace.
        """
        if isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _field_error("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
        if sort_direction not in ("asc", "desc"):
            raise _field_error("sort_direction", "must be 'asc' or 'desc'")
        after_at: datetime | None = None
        if start_after is not None:
            cursor = None
            if is_history_id(start_after):
                cursor = await self._pool.fetchrow(
                    "SELECT created_at FROM history_items WHERE id = $1 AND workspace_id = $2",
                    start_after,
                    workspace_id,
                )
            if cursor is None:
                raise _field_error(
                    "start_after_history_item_id", f"no history item with id {start_after!r}"
                )
            after_at = cursor["created_at"]
        # Keyset paging on (created_at, id): stable however many items arrive meanwhile.
        newer = sort_direction == "asc"
        op, order = (">", "ASC") if newer else ("<", "DESC")
        rows = await self._pool.fetch(
            f"""
            SELECT {_COLUMNS} FROM history_items
            WHERE workspace_id = $1
              AND ($2::timestamptz IS NULL OR (created_at, id) {op} ($2, $3::text))
              AND ($4::text IS NULL OR voice_id = $4)
              AND ($5::text IS NULL OR model_id = $5)
              AND ($6::timestamptz IS NULL OR created_at < $6)
              AND ($7::timestamptz IS NULL OR created_at >= $7)
              AND ($8::text IS NULL OR text ILIKE $8 OR voice_name ILIKE $8)
              AND ($9::text IS NULL OR source = $9)
            ORDER BY created_at {order}, id {order}
            LIMIT $10
            """,
            workspace_id,
            after_at,
            start_after,
            voice_id,
            model_id,
            date_before,
            date_after,
            _like_pattern(search) if search else None,
            source,
            page_size + 1,
        )
        items = [_item(row) for row in rows[:page_size]]
        return HistoryPage(items=items, has_more=len(rows) > page_size)

    async def get(self, workspace_id: UUID, item_id: str) -> HistoryItem:
        """One item without its audio. Raises NotFound (also for another workspace's item)."""
        if not is_history_id(item_id):
            raise _not_found(item_id)
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM history_items WHERE id = $1 AND workspace_id = $2",
            item_id,
            workspace_id,
        )
        if row is None:
            raise _not_found(item_id)
        return _item(row)

    async def get_audio(self, workspace_id: UUID, item_id: str) -> tuple[HistoryItem, bytes]:
        """One item and its audio. Raises NotFound (also for another workspace's item)."""
        found = await self.get_audios(workspace_id, [item_id])
        return found[0]

    async def get_audios(
        self, workspace_id: UUID, item_ids: Sequence[str]
    ) -> builtins.list[tuple[HistoryItem, bytes]]:
        """Items with their audio, in the order asked (duplicates once).

        Raises NotFound naming every id that is not in this workspace.
        """
        wanted = list(dict.fromkeys(item_ids))
        missing = [i for i in wanted if not is_history_id(i)]
        rows = await self._pool.fetch(
            f"""
            SELECT {", ".join("i." + c.strip() for c in _COLUMNS.split(","))}, a.audio
            FROM history_items i JOIN history_audio a ON a.history_item_id = i.id
            WHERE i.id = ANY($1::text[]) AND i.workspace_id = $2
            """,
            [i for i in wanted if is_history_id(i)],
            workspace_id,
        )
        by_id = {row["id"]: row for row in rows}
        missing += [i for i in wanted if is_history_id(i) and i not in by_id]
        if missing:
            raise NotFound(
                f"no history item with id {', '.join(repr(i) for i in missing)}",
                details={"history_item_ids": missing},
            )
        return [(_item(by_id[i]), bytes(by_id[i]["audio"])) for i in wanted]

    async def delete(self, workspace_id: UUID, item_id: str) -> None:
        """Delete an item and its audio. Raises NotFound (also for another workspace's item)."""
        if not is_history_id(item_id):
            raise _not_found(item_id)
        deleted = await self._pool.fetchval(
            "DELETE FROM history_items WHERE id = $1 AND workspace_id = $2 RETURNING id",
            item_id,
            workspace_id,
        )
        if deleted is None:
            raise _not_found(item_id)
