"""ElevenLabs Studio's response shapes (``elevenlabs.types``: ``ProjectResponse``,
``ProjectExtendedResponse``, ``ChapterResponse``, ``ChapterWithContentResponseModel``, the
snapshot models) built from store/studio.py's records. Every field the SDK requires is present;
what this server does not keep gets an honest default (no cover, no pronunciation dictionaries,
no character alignments).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..jobs.studio_content import conversion_statistics
from ..store.studio import StudioChapter, StudioProject, StudioSnapshot

__all__ = ["chapter_json", "extended_json", "project_json", "snapshot_json"]


def _unix(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def project_json(project: StudioProject) -> dict[str, Any]:
    """``ProjectResponse``: every required field, honest defaults for what is not kept."""
    meta = project.metadata
    return {
        "project_id": project.id,
        "name": project.name,
        "create_date_unix": _unix(project.created_at),
        "created_by_user_id": None,
        "default_title_voice_ref_id": project.default_title_voice_id,
        "default_paragraph_voice_ref_id": project.default_paragraph_voice_id,
        "default_title_voice_id": project.default_title_voice_id,
        "default_paragraph_voice_id": project.default_paragraph_voice_id,
        "default_model_id": project.default_model_id,
        "last_conversion_date_unix": _unix(project.last_conversion_at),
        "can_be_downloaded": project.has_snapshot,
        "title": meta.get("title"),
        "author": meta.get("author"),
        "description": meta.get("description"),
        "genres": meta.get("genres"),
        "cover_image_url": None,
        "target_audience": meta.get("target_audience"),
        "language": meta.get("language"),
        "content_type": meta.get("content_type"),
        "original_publication_date": meta.get("original_publication_date"),
        "mature_content": meta.get("mature_content"),
        "isbn_number": meta.get("isbn_number"),
        "volume_normalization": project.volume_normalization,
        "state": "converting" if project.converting else "default",
        "access_level": "admin",
        "fiction": meta.get("fiction"),
        "quality_check_on": False,
        "quality_check_on_when_bulk_convert": False,
        "creation_meta": None,
        "source_type": meta.get("source_type"),
        "chapters_enabled": True,
    }


def _voice_ids(chapter: StudioChapter) -> list[str]:
    seen: dict[str, None] = {}
    for block in chapter.content.get("blocks", []):
        for node in block.get("nodes", []):
            seen[node["voice_id"]] = None
    return list(seen)


def _converted_blocks(chapter: StudioChapter) -> list[dict[str, Any]] | None:
    """The blocks as last converted. Where that job's row is gone (its input with it), the
    chapter counts as converted when it has not changed since its last snapshot."""
    if chapter.converted_blocks is not None or not chapter.has_snapshot:
        return chapter.converted_blocks
    converted_at, updated_at = chapter.last_conversion_at, chapter.updated_at
    if converted_at is not None and updated_at is not None and updated_at <= converted_at:
        return list(chapter.content.get("blocks", []))
    return None


def chapter_json(chapter: StudioChapter, *, content: bool = False) -> dict[str, Any]:
    """``ChapterResponse`` (with ``content``: ``ChapterWithContentResponseModel``)."""
    blocks = chapter.content.get("blocks", [])
    stats = conversion_statistics(chapter.content, _converted_blocks(chapter))
    out: dict[str, Any] = {
        "chapter_id": chapter.id,
        "name": chapter.name,
        "last_conversion_date_unix": _unix(chapter.last_conversion_at),
        "conversion_progress": None,
        # Its audio says what the chapter says: not after an edit until converted again.
        "can_be_downloaded": chapter.has_snapshot and stats.characters_unconverted == 0,
        "state": "converting" if chapter.converting else "default",
        "has_video": False,
        "has_visual_content": False,
        "voice_ids": _voice_ids(chapter),
        "statistics": {
            "characters_unconverted": stats.characters_unconverted,
            "characters_converted": stats.characters_converted,
            "paragraphs_converted": stats.paragraphs_converted,
            "paragraphs_unconverted": stats.paragraphs_unconverted,
        },
        "last_conversion_error": chapter.last_conversion_error,
    }
    if content:
        out["content"] = {
            "blocks": [
                {
                    "block_id": block["block_id"],
                    "sub_type": block.get("sub_type", "p"),
                    "nodes": [
                        {
                            "type": "tts_node",
                            "project_voice_ref_id": node["voice_id"],
                            "voice_id": node["voice_id"],
                            "text": node["text"],
                        }
                        for node in block.get("nodes", [])
                    ],
                }
                for block in blocks
            ]
        }
    return out


def extended_json(project: StudioProject, chapters: list[StudioChapter]) -> dict[str, Any]:
    """``ProjectExtendedResponse``."""
    return {
        **project_json(project),
        "quality_preset": project.quality_preset,
        "chapters": [chapter_json(chapter) for chapter in chapters],
        "pronunciation_dictionary_versions": [],
        "pronunciation_dictionary_locators": [],
        "apply_text_normalization": "auto",
        "experimental": {},
        "assets": [],
        "voices": [],
    }


def snapshot_json(snapshot: StudioSnapshot, *, extended: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "project_id": snapshot.project_id,
        "created_at_unix": _unix(snapshot.created_at),
        "name": snapshot.name,
    }
    if snapshot.chapter_id is None:
        out["project_snapshot_id"] = snapshot.id
        out["audio_upload"] = None
        out["zip_upload"] = None
    else:
        out["chapter_snapshot_id"] = snapshot.id
        out["chapter_id"] = snapshot.chapter_id
    if extended:
        # Character timings are not kept per snapshot: an empty list, as the model allows.
        out["character_alignments"] = []
        out["audio_duration_secs"] = snapshot.duration
    return out
