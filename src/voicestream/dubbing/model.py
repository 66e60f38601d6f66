"""The dubbing plan: what the source says, when, by whom, and what each language says instead.

Pydantic models, so the dubbing store keeps them as the JSON they dump and the REST layer can
answer with them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["DubOptions", "DubPlan", "DubSegment", "DubSpeaker"]


class DubSpeaker(BaseModel):
    id: str  # "speaker_0", "speaker_1", ...
    voices: dict[str, str] = Field(default_factory=dict)  # language -> voice id
    pitch_hz: float | None = None  # median F0 of the source speaker, when measured


class DubSegment(BaseModel):
    id: str  # stable: "seg_0003"
    start: float  # seconds in the source media's timeline
    end: float
    speaker_id: str
    text: str  # source-language text
    translations: dict[str, str] = Field(default_factory=dict)  # language -> target text
    voices: dict[str, str] = Field(default_factory=dict)  # per-segment override


class DubPlan(BaseModel):
    source_language: str
    duration: float
    has_video: bool
    segments: list[DubSegment]
    speakers: list[DubSpeaker]
    notes: list[str] = Field(default_factory=list)


class DubOptions(BaseModel):
    source_language: str | None = None  # None or "auto": detected by Whisper
    target_languages: list[str]  # ISO 639-1, checked with dubbing.languages
    num_speakers: int = Field(0, ge=0)  # 0: automatic
    start_time: float | None = Field(None, ge=0)
    end_time: float | None = Field(None, gt=0)
    drop_background_audio: bool = False
    voices: dict[str, str] = Field(default_factory=dict)  # speaker id -> voice id
    output_format: str = "mp3_44100_128"  # for audio-only sources
