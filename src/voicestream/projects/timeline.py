"""A project's timeline: tracks of clips (TTS blocks and audio assets), one optional video.

The timeline is stored whole, as its JSON, with every version of a project (store/projects.py);
these models are what the API accepts and answers, so their bounds are the request's bounds.
Ids of tracks and clips are the client's (or made here when it gives none) and unique within
the timeline, so that two versions can be compared clip by clip (``diff``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Final, Literal, Self
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_DUCK_DB",
    "MAX_CLIPS",
    "MAX_TEXT",
    "MAX_TRACKS",
    "AudioClip",
    "Clip",
    "ClipSettings",
    "ProjectSettings",
    "TTSClip",
    "Timeline",
    "Track",
    "VideoAsset",
]

MAX_TRACKS: Final = 32
MAX_CLIPS: Final = 2000  # in the whole timeline
MAX_TEXT: Final = 5000  # characters of one TTS block
MAX_SECONDS: Final = 6 * 3600.0  # a timeline position or length
DEFAULT_DUCK_DB: Final = -12.0  # music and effects under speech
_ID = r"^[A-Za-z0-9_.-]{1,64}$"
# Rates the encoders take for every output format (media/formats.py).
_RATES = Literal[8000, 16000, 22050, 24000, 32000, 44100, 48000]


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:12]}"


Seconds = Annotated[float, Field(ge=0.0, le=MAX_SECONDS)]
Gain = Annotated[float, Field(ge=-60.0, le=24.0)]
Fade = Annotated[float, Field(ge=0.0, le=60.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSettings(_Strict):
    # None: the export's format decides the rate.
    sample_rate: _RATES | None = None
    loudness_lufs: float = Field(-16.0, ge=-40.0, le=-5.0)


class VideoAsset(_Strict):
    file_id: UUID


class ClipSettings(_Strict):
    speed: float | None = Field(None, ge=0.5, le=2.0)


class TTSClip(_Strict):
    id: Annotated[str, Field(pattern=_ID)] = Field(default_factory=lambda: _new_id("clip"))
    type: Literal["tts"] = "tts"
    start: Seconds
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    voice_id: Annotated[str, Field(min_length=1, max_length=200)]
    settings: ClipSettings = Field(default_factory=lambda: ClipSettings.model_validate({}))
    gain_db: Gain = 0.0
    fade_in: Fade = 0.0
    fade_out: Fade = 0.0

    @model_validator(mode="after")
    def _spoken(self) -> Self:
        if not self.text.strip():
            raise ValueError("text is empty")
        return self


class AudioClip(_Strict):
    id: Annotated[str, Field(pattern=_ID)] = Field(default_factory=lambda: _new_id("clip"))
    type: Literal["audio"] = "audio"
    start: Seconds
    file_id: UUID
    trim_start: Seconds | None = None  # seconds skipped at the asset's start
    duration: Annotated[float, Field(gt=0.0, le=MAX_SECONDS)] | None = None  # None: to its end
    gain_db: Gain = 0.0
    fade_in: Fade = 0.0
    fade_out: Fade = 0.0


Clip = Annotated[TTSClip | AudioClip, Field(discriminator="type")]


class Track(_Strict):
    id: Annotated[str, Field(pattern=_ID)] = Field(default_factory=lambda: _new_id("track"))
    kind: Literal["voice", "music", "effects"]
    name: Annotated[str, Field(max_length=200)] = ""
    gain_db: Gain = 0.0
    # Attenuation of this track while a voice track speaks; None: DEFAULT_DUCK_DB for music
    # and effects, none for voice.
    duck_db: Annotated[float, Field(ge=-60.0, le=0.0)] | None = None
    clips: Annotated[list[Clip], Field(max_length=MAX_CLIPS)] = Field(default_factory=list)

    @property
    def effective_duck_db(self) -> float:
        if self.kind == "voice":
            return 0.0
        return DEFAULT_DUCK_DB if self.duck_db is None else self.duck_db


class Timeline(_Strict):
    """What a version of a project holds (everything but its name)."""

    settings: ProjectSettings = Field(default_factory=lambda: ProjectSettings.model_validate({}))
    video_asset: VideoAsset | None = None
    tracks: Annotated[list[Track], Field(max_length=MAX_TRACKS)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        tracks: set[str] = set()
        clips: set[str] = set()
        for track in self.tracks:
            if track.id in tracks:
                raise ValueError(f"track id {track.id!r} is used twice")
            tracks.add(track.id)
            for clip in track.clips:
                if clip.id in clips:
                    raise ValueError(f"clip id {clip.id!r} is used twice")
                clips.add(clip.id)
        if len(clips) > MAX_CLIPS:
            raise ValueError(f"a timeline holds at most {MAX_CLIPS} clips")
        return self

    def clips(self) -> Iterator[tuple[Track, TTSClip | AudioClip]]:
        for track in self.tracks:
            for clip in track.clips:
                yield track, clip

    def tts_clips(self) -> Iterator[tuple[Track, TTSClip]]:
        for track, clip in self.clips():
            if isinstance(clip, TTSClip):
                yield track, clip

    def file_ids(self) -> list[UUID]:
        """Every file the timeline names (assets, the video), each once, in order."""
        seen: dict[UUID, None] = {}
        if self.video_asset is not None:
            seen[self.video_asset.file_id] = None
        for _, clip in self.clips():
            if isinstance(clip, AudioClip):
                seen[clip.file_id] = None
        return list(seen)

    def voice_ids(self) -> list[str]:
        return list(dict.fromkeys(clip.voice_id for _, clip in self.tts_clips()))

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
