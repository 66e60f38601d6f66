"""Text-to-dialogue bodies and timestamped pieces, without a server."""

from __future__ import annotations

from typing import Any

import pytest
from elevenlabs.types import AudioWithTimestampsAndVoiceSegmentsResponseModel

from voicestream.errors import EmptyText, TextTooLong, ValidationFailed
from voicestream.protocols import elevenlabs as el
from voicestream.protocols import elevenlabs_dialogue as dialogue


def _body(**fields: Any) -> dialogue.DialogueBody:
    return dialogue.DialogueBody.model_validate(fields)


def test_a_dialogue_body_as_the_sdk_sends_it() -> None:
    body = dialogue.check_dialogue_body(
        _body(
            inputs=[{"text": "Hi.", "voice_id": "slt"}, {"text": "Hello!", "voice_id": "rms"}],
            model_id="eleven_v3",
            settings={"stability": 0.5, "similarity": 0.7},
            seed=3,
            audio_effects=None,  # fields we do not use are accepted
        ),
        max_text_chars=100,
    )
    assert [(i.text, i.voice_id) for i in body.inputs] == [("Hi.", "slt"), ("Hello!", "rms")]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"inputs": []}, ValidationFailed),
        ({"inputs": [{"text": "  ", "voice_id": "slt"}]}, EmptyText),
        ({"inputs": [{"text": "Hi", "voice_id": " "}]}, ValidationFailed),
        ({"inputs": [{"text": "Hi", "voice_id": f"v{i}"} for i in range(11)]}, ValidationFailed),
        ({"inputs": [{"text": "x" * 60, "voice_id": "a"}] * 2}, TextTooLong),
        ({"inputs": [{"text": "Hi", "voice_id": "a"}], "model_id": "nope"}, ValidationFailed),
    ],
)
def test_bad_dialogue_bodies(fields: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        dialogue.check_dialogue_body(_body(**fields), max_text_chars=100)


def test_timestamped_response_reads_back_through_the_sdk_types() -> None:
    timing = dialogue.shifted(el.CharTiming(("H", "i"), (0.0, 0.1), (0.1, 0.2)), 1.5)
    assert timing.starts == (1.5, 1.6)
    segment = dialogue.VoiceSegment("rms", 1.5, 1.7, 3, 5, 1)
    body = dialogue.timestamps_json(b"\x01\x02", timing, [segment])
    parsed = AudioWithTimestampsAndVoiceSegmentsResponseModel.model_validate(body)
    assert parsed.alignment is not None and parsed.alignment.characters == ["H", "i"]
    (seg,) = parsed.voice_segments
    assert (seg.voice_id, seg.character_start_index, seg.dialogue_input_index) == ("rms", 3, 1)
