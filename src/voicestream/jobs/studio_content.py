"""What a Studio project's chapter holds, as ElevenLabs' Studio API writes it: blocks (a
paragraph ``p`` or a heading ``h1``-``h3``) of TTS nodes, each a voice and its text.

The checks every way in shares (``from_content_json`` at creation, a chapter's ``content`` on
update, an uploaded document): the shape, known voices, and a bound on the characters, each
failure a ValidationFailed naming the field. Stored as ``{"blocks": [...]}`` with every block
given an id.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import ValidationFailed
from ..media.documents import Document

__all__ = [
    "MAX_STUDIO_CHARACTERS",
    "ConversionStatistics",
    "KnownVoice",
    "StudioBlock",
    "StudioChapterContent",
    "StudioChapterInput",
    "StudioNode",
    "chapters_from_document",
    "chapters_from_json",
    "characters_of",
    "checked_content",
    "conversion_statistics",
    "parse_chapter_content",
]

MAX_STUDIO_CHARACTERS: Final = 2_000_000  # as a tts job: a long novel
MAX_CHAPTERS: Final = 1000

SubType = Literal["p", "h1", "h2", "h3"]


class StudioNode(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["tts_node"] = "tts_node"
    voice_id: str = Field(min_length=1, max_length=200)
    text: str = Field(max_length=MAX_STUDIO_CHARACTERS)


class StudioBlock(BaseModel):
    model_config = ConfigDict(extra="ignore")

    block_id: str | None = Field(None, min_length=1, max_length=64)
    sub_type: SubType = "p"
    nodes: list[StudioNode]


class StudioChapterContent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    blocks: list[StudioBlock]


class StudioChapterInput(BaseModel):
    """One chapter of ``from_content_json``."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=255)
    blocks: list[StudioBlock] = []


_CHAPTERS: Final = TypeAdapter(list[StudioChapterInput])
KnownVoice = Callable[[str], bool]


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}", details={"fields": [{"field": field, "message": message}]}
    )


def _from_validation(field: str, exc: ValidationError) -> ValidationFailed:
    fields = [
        {
            "field": ".".join([field, *(str(part) for part in error["loc"])]),
            "message": error["msg"],
        }
        for error in exc.errors()
    ]
    first = fields[0]
    return ValidationFailed(f"{first['field']}: {first['message']}", details={"fields": fields})


def characters_of(content: dict[str, Any]) -> int:
    return sum(len(n["text"]) for b in content.get("blocks", []) for n in b.get("nodes", []))


@dataclass(frozen=True, slots=True)
class ConversionStatistics:
    characters_converted: int
    characters_unconverted: int
    paragraphs_converted: int
    paragraphs_unconverted: int


def _spoken(block: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What a block sounds like: its kind (pauses differ) and each node's voice and text."""
    nodes = tuple((n["voice_id"], n["text"]) for n in block.get("nodes", []))
    return block.get("sub_type", "p"), nodes


def conversion_statistics(
    content: dict[str, Any], converted_blocks: Sequence[dict[str, Any]] | None
) -> ConversionStatistics:
    """Which of a chapter's blocks its last conversion read as they are now: a block edited
    since (or added) counts as unconverted until the chapter is converted again. Blocks are
    matched by what they say, not by id, so a moved paragraph stays converted."""
    available = Counter(_spoken(block) for block in converted_blocks or ())
    counts = [0, 0, 0, 0]  # characters converted, unconverted; paragraphs converted, unconverted
    for block in content.get("blocks", []):
        nodes = block.get("nodes", [])
        if not nodes:
            continue
        spoken = _spoken(block)
        converted = available[spoken] > 0
        if converted:
            available[spoken] -= 1
        characters = sum(len(node["text"]) for node in nodes)
        counts[0 if converted else 1] += characters
        counts[2 if converted else 3] += 1
    return ConversionStatistics(*counts)


def checked_content(
    blocks: Sequence[StudioBlock], known_voice: KnownVoice, field: str
) -> dict[str, Any]:
    """The stored form of ``blocks``: voices checked, every block with an id."""
    out = []
    for b, block in enumerate(blocks):
        nodes = []
        for n, node in enumerate(block.nodes):
            if not known_voice(node.voice_id):
                raise _invalid(
                    f"{field}.blocks.{b}.nodes.{n}.voice_id",
                    f"unknown voice {node.voice_id!r}; GET /v1/voices lists the voices",
                )
            nodes.append({"type": "tts_node", "voice_id": node.voice_id, "text": node.text})
        block_id = block.block_id or secrets.token_hex(10)
        out.append({"block_id": block_id, "sub_type": block.sub_type, "nodes": nodes})
    content = {"blocks": out}
    if characters_of(content) > MAX_STUDIO_CHARACTERS:
        raise _invalid(field, f"a chapter may hold at most {MAX_STUDIO_CHARACTERS} characters")
    return content


def parse_chapter_content(raw: Any, known_voice: KnownVoice) -> dict[str, Any]:
    """A chapter's ``content`` as an update sends it."""
    try:
        content = StudioChapterContent.model_validate(raw)
    except ValidationError as exc:
        raise _from_validation("content", exc) from None
    return checked_content(content.blocks, known_voice, "content")


def chapters_from_json(text: str, known_voice: KnownVoice) -> list[tuple[str, dict[str, Any]]]:
    """``from_content_json``: a JSON list of chapters, each a name and blocks."""
    field = "from_content_json"
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise _invalid(field, f"not valid JSON ({exc})") from None
    try:
        chapters = _CHAPTERS.validate_python(raw)
    except ValidationError as exc:
        raise _from_validation(field, exc) from None
    if len(chapters) > MAX_CHAPTERS:
        raise _invalid(field, f"at most {MAX_CHAPTERS} chapters")
    out = [
        (chapter.name, checked_content(chapter.blocks, known_voice, f"{field}.{index}"))
        for index, chapter in enumerate(chapters)
    ]
    if sum(characters_of(content) for _, content in out) > MAX_STUDIO_CHARACTERS:
        raise _invalid(field, f"a project may hold at most {MAX_STUDIO_CHARACTERS} characters")
    return out


def chapters_from_document(
    document: Document, title_voice: str, paragraph_voice: str
) -> list[tuple[str, dict[str, Any]]]:
    """A parsed document's chapters: the title a heading in the title voice, each paragraph a
    block in the paragraph voice."""
    if document.characters > MAX_STUDIO_CHARACTERS:
        raise _invalid(
            "from_document", f"a project may hold at most {MAX_STUDIO_CHARACTERS} characters"
        )
    if len(document.chapters) > MAX_CHAPTERS:
        raise _invalid("from_document", f"at most {MAX_CHAPTERS} chapters")
    out = []
    for index, chapter in enumerate(document.chapters):
        blocks = []
        if chapter.title:
            node = {"type": "tts_node", "voice_id": title_voice, "text": chapter.title}
            blocks.append({"block_id": secrets.token_hex(10), "sub_type": "h1", "nodes": [node]})
        for paragraph in chapter.paragraphs:
            node = {"type": "tts_node", "voice_id": paragraph_voice, "text": paragraph}
            blocks.append({"block_id": secrets.token_hex(10), "sub_type": "p", "nodes": [node]})
        name = (chapter.title or f"Chapter {index + 1}")[:255]
        out.append((name, {"blocks": blocks}))
    return out
