"""Edits of a timeline (add, change, remove a clip) and what changed between two timelines.

Edits return a new ``Timeline``, validated whole, and never change the one given: every
version a project stores is immutable.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import NotFound, ValidationFailed
from .timeline import AudioClip, Timeline, Track, TTSClip

__all__ = [
    "ChangedItem",
    "FieldChange",
    "ItemChanges",
    "TimelineDiff",
    "add_clip",
    "delete_clip",
    "diff",
    "update_clip",
]


class FieldChange(BaseModel):
    field: str
    before: Any
    after: Any


class ChangedItem(BaseModel):
    id: str
    track_id: str | None = None  # a clip's track (in the newer version)
    changes: list[FieldChange]


class AddedOrRemoved(BaseModel):
    id: str
    track_id: str | None = None
    item: dict[str, Any]


class ItemChanges(BaseModel):
    added: list[AddedOrRemoved]
    removed: list[AddedOrRemoved]
    changed: list[ChangedItem]


class TimelineDiff(BaseModel):
    from_version: int
    to_version: int
    settings: list[FieldChange]  # project settings and the video asset
    tracks: ItemChanges  # a track's own fields; its clips are under ``clips``
    clips: ItemChanges


def _fields(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[FieldChange]:
    changes: list[FieldChange] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += _fields(old, new, f"{prefix}{name}.")
        elif old != new:
            changes.append(FieldChange(field=f"{prefix}{name}", before=old, after=new))
    return changes


def _track_fields(track: Track) -> dict[str, Any]:
    return track.model_dump(mode="json", exclude={"clips"})


def diff(old: Timeline, new: Timeline, from_version: int, to_version: int) -> TimelineDiff:
    settings = _fields(
        {"settings": old.settings.model_dump(mode="json"), "video_asset": _video(old)},
        {"settings": new.settings.model_dump(mode="json"), "video_asset": _video(new)},
    )
    old_tracks = {t.id: t for t in old.tracks}
    new_tracks = {t.id: t for t in new.tracks}
    tracks = ItemChanges(
        added=[
            AddedOrRemoved(id=i, item=_track_fields(t))
            for i, t in new_tracks.items()
            if i not in old_tracks
        ],
        removed=[
            AddedOrRemoved(id=i, item=_track_fields(t))
            for i, t in old_tracks.items()
            if i not in new_tracks
        ],
        changed=[],
    )
    for track_id, track in new_tracks.items():
        if track_id in old_tracks:
            fields = _fields(_track_fields(old_tracks[track_id]), _track_fields(track))
            if fields:
                tracks.changed.append(ChangedItem(id=track_id, changes=fields))
    old_clips = {c.id: (t.id, c.model_dump(mode="json")) for t, c in old.clips()}
    new_clips = {c.id: (t.id, c.model_dump(mode="json")) for t, c in new.clips()}
    clips = ItemChanges(
        added=[
            AddedOrRemoved(id=i, track_id=t, item=c)
            for i, (t, c) in new_clips.items()
            if i not in old_clips
        ],
        removed=[
            AddedOrRemoved(id=i, track_id=t, item=c)
            for i, (t, c) in old_clips.items()
            if i not in new_clips
        ],
        changed=[],
    )
    for clip_id, (track_id, clip) in new_clips.items():
        if clip_id not in old_clips:
            continue
        old_track, old_clip = old_clips[clip_id]
        fields = _fields({"track_id": old_track, **old_clip}, {"track_id": track_id, **clip})
        if fields:
            clips.changed.append(ChangedItem(id=clip_id, track_id=track_id, changes=fields))
    return TimelineDiff(
        from_version=from_version,
        to_version=to_version,
        settings=settings,
        tracks=tracks,
        clips=clips,
    )


def _video(timeline: Timeline) -> str | None:
    return None if timeline.video_asset is None else str(timeline.video_asset.file_id)


def _validated(data: dict[str, Any]) -> Timeline:
    try:
        return Timeline.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]) or "timeline", "message": err["msg"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        raise ValidationFailed(f"the edited timeline is invalid: {message}",
                               details={"fields": fields}) from None  # fmt: skip


def _find_clip(data: dict[str, Any], clip_id: str) -> tuple[list[dict[str, Any]], int]:
    for track in data["tracks"]:
        for index, clip in enumerate(track["clips"]):
            if clip["id"] == clip_id:
                return track["clips"], index
    raise NotFound(f"no clip with id {clip_id!r} in this project")


def add_clip(timeline: Timeline, track_id: str, clip: TTSClip | AudioClip) -> Timeline:
    data = timeline.dump()
    for track in data["tracks"]:
        if track["id"] == track_id:
            track["clips"].append(clip.model_dump(mode="json"))
            return _validated(data)
    raise NotFound(f"no track with id {track_id!r} in this project")


def update_clip(timeline: Timeline, clip_id: str, changes: dict[str, Any]) -> Timeline:
    """``changes``: the clip's fields to set (``settings`` merged field by field); its id and
    type stay."""
    for fixed in ("id", "type"):
        if fixed in changes:
            raise ValidationFailed(
                f"a clip's {fixed} cannot be changed",
                details={"fields": [{"field": fixed, "message": "cannot be changed"}]},
            )
    data = timeline.dump()
    clips, index = _find_clip(data, clip_id)
    clip = dict(clips[index])
    for name, value in changes.items():
        if name == "settings" and isinstance(value, dict) and isinstance(clip.get(name), dict):
            clip[name] = {**clip[name], **value}
        else:
            clip[name] = value
    clips[index] = clip
    return _validated(data)


def delete_clip(timeline: Timeline, clip_id: str) -> Timeline:
    data = timeline.dump()
    clips, index = _find_clip(data, clip_id)
    del clips[index]
    return _validated(data)
