"""ElevenLabs' text-to-dialogue shapes: ``POST /v1/text-to-dialogue[/stream][/with-timestamps]``.

Pure: the request body and its checks, and the pieces of the timestamped responses
(``alignment`` plus ``voice_segments``, which say which input and voice each stretch of audio
and run of characters belongs to). The transport (``transports/elevenlabs_dialogue.py``) speaks
each input with its own voice and joins the turns with a short pause.

The body (SDK 2.78 ``text_to_dialogue/raw_client.py``): ``{"inputs": [{"text", "voice_id"}, ...],
"model_id"?, "language_code"?, "settings"?: {"stability", "similarity", ...}, "seed"?, ...}``
with ``output_format`` and ``enable_logging`` in the query. Fields our engines have no use for
are accepted and ignored, as on the text-to-speech routes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from ..errors import EmptyText, TextTooLong, ValidationFailed
from .elevenlabs import CharTiming, TTSBody, check_tts_body

__all__ = [
    "DEFAULT_DIALOGUE_MODEL",
    "MAX_DIALOGUE_VOICES",
    "DialogueBody",
    "DialogueInput",
    "DialogueSettings",
    "VoiceSegment",
    "check_dialogue_body",
    "shifted",
    "timestamps_json",
]

DEFAULT_DIALOGUE_MODEL: Final = "eleven_v3"  # the only model ElevenLabs offers for dialogue
MAX_DIALOGUE_VOICES: Final = 10  # ElevenLabs' limit on distinct voice ids in one request


class DialogueInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str
    voice_id: str


class DialogueSettings(BaseModel):
    """``settings`` (``ToDialogueSettingsResponseModel``); our engines use none of them."""

    model_config = ConfigDict(extra="allow")

    stability: float | None = Field(None, ge=0, le=1)
    similarity: float | None = Field(None, ge=0, le=1)
    clone_strength: float | None = Field(None, ge=0, le=1)


class DialogueBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    inputs: list[DialogueInput]
    model_id: str | None = None
    language_code: str | None = None
    settings: DialogueSettings | None = None
    seed: int | None = Field(None, ge=0, le=4294967295)
    previous_text: str | None = None
    future_text: str | None = None


def _field_error(message: str, field: str, problem: str) -> ValidationFailed:
    return ValidationFailed(message, details={"fields": [{"field": field, "message": problem}]})


def check_dialogue_body(body: DialogueBody, *, max_text_chars: int) -> DialogueBody:
    """The checks beyond the model's types.

    Raises:
        ValidationFailed: no inputs, an empty voice id, too many voices, an unknown model (422).
        EmptyText: an input with nothing but whitespace to say (422).
        TextTooLong: the inputs' text together exceeds ``max_text_chars`` (400).
    """
    if not body.inputs:
        raise _field_error(
            'inputs is empty; send at least one {"text", "voice_id"}', "inputs", "empty list"
        )
    for i, item in enumerate(body.inputs):
        if not item.text.strip():
            raise EmptyText(
                f"inputs[{i}].text is empty",
                details={"fields": [{"field": f"inputs.{i}.text", "message": "empty text"}]},
            )
        if not item.voice_id.strip():
            raise _field_error(f"inputs[{i}].voice_id is empty", f"inputs.{i}.voice_id", "empty")
    voices = {item.voice_id for item in body.inputs}
    if len(voices) > MAX_DIALOGUE_VOICES:
        raise _field_error(
            f"the inputs use {len(voices)} voices; at most {MAX_DIALOGUE_VOICES} may take part",
            "inputs",
            "too many voices",
        )
    total = sum(len(item.text) for item in body.inputs)
    if total > max_text_chars:
        raise TextTooLong(
            f"the inputs' text has {total} characters in all; the limit is {max_text_chars}"
        )
    # The model rules are text-to-speech's (the text itself passed above).
    joined = "".join(item.text for item in body.inputs)
    check_tts_body(
        TTSBody.model_validate({"text": joined, "model_id": body.model_id}),
        max_text_chars=max_text_chars,
    )
    return body


def shifted(timing: CharTiming, by: float) -> CharTiming:
    """``timing`` moved ``by`` seconds later (a turn's times into the dialogue's)."""
    return CharTiming(
        timing.characters,
        tuple(t + by for t in timing.starts),
        tuple(t + by for t in timing.ends),
    )


@dataclass(frozen=True, slots=True)
class VoiceSegment:
    """A stretch of the audio spoken by one input's voice, and its characters' index range."""

    voice_id: str
    start: float
    end: float
    char_start: int
    char_end: int  # exclusive
    input_index: int

    def to_json(self) -> dict[str, Any]:
        return {
            "voice_id": self.voice_id,
            "start_time_seconds": round(self.start, 3),
            "end_time_seconds": round(self.end, 3),
            "character_start_index": self.char_start,
            "character_end_index": self.char_end,
            "dialogue_input_index": self.input_index,
        }


def timestamps_json(
    audio: bytes, timing: CharTiming | None, segments: Sequence[VoiceSegment]
) -> dict[str, Any]:
    """``AudioWithTimestampsAndVoiceSegmentsResponseModel`` (also one line of the stream)."""
    alignment = timing.to_json() if timing is not None else None
    return {
        "audio_base64": base64.b64encode(audio).decode("ascii"),
        "alignment": alignment,
        "normalized_alignment": alignment,  # we speak the text as written
        "voice_segments": [s.to_json() for s in segments],
    }
