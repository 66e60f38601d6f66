"""The ElevenLabs REST shapes, without sockets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from voicestream.engines.base import Alignment, Voice
from voicestream.errors import (
    EmptyText,
    TextTooLong,
    UnknownVoice,
    ValidationFailed,
)
from voicestream.protocols import elevenlabs as el

VOICES = [
    Voice("slt", "SLT", "en-US", "female", 16000, "flite"),
    Voice("rms", "RMS", "en-US", "male", 16000, "flite"),
    Voice("de", "German", "de", "male", 22050, "espeak-ng"),
]


def test_module_imports_no_io_framework() -> None:
    tree = ast.parse(Path(el.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                assert (name or "").split(".")[0] not in {"asyncio", "aiohttp", "asyncpg", "redis"}


def test_tts_body_accepts_and_ignores_unknown_fields() -> None:
    body = el.parse_tts_body(
        {
            "text": "Hello",
            "model_id": "eleven_flash_v2_5",
            "voice_settings": {"stability": 0.5, "similarity_boost": 0.7, "new_knob": 1},
            "pronunciation_dictionary_locators": [],
            "apply_text_normalization": "auto",
            "something_new": True,
        },
        max_text_chars=100,
    )
    assert body.text == "Hello" and body.model_id == "eleven_flash_v2_5"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([], ValidationFailed),
        ({}, ValidationFailed),
        ({"text": 3}, ValidationFailed),
        ({"text": ""}, EmptyText),
        ({"text": " \n "}, EmptyText),
        ({"text": "x" * 101}, TextTooLong),
        ({"text": "hi", "model_id": "gpt-4"}, ValidationFailed),
        ({"text": "hi", "voice_settings": {"stability": 2}}, ValidationFailed),
        ({"text": "hi", "seed": -1}, ValidationFailed),
    ],
)
def test_tts_body_rejects(data: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        el.parse_tts_body(data, max_text_chars=100)


def test_error_bodies() -> None:
    err = UnknownVoice("unknown voice 'x'")
    assert el.error_body(err, status=404) == {
        "detail": {"status": "voice_not_found", "message": "unknown voice 'x'"}
    }
    invalid = ValidationFailed("bad", details={"fields": [{"field": "model_id", "message": "m"}]})
    assert el.error_body(invalid, status=422) == {
        "detail": [{"loc": ["body", "model_id"], "msg": "m", "type": "invalid_request"}]
    }
    assert el.error_body(EmptyText("text is empty"), status=422)["detail"][0]["msg"]


def test_stt_form_treats_literal_null_as_absent() -> None:
    form = el.parse_stt_form(
        {"model_id": "scribe_v1", "language_code": "null", "timestamps_granularity": "null"}
    )
    assert form == el.SpeechToTextForm("scribe_v1", None, "word")
    for bad in ({}, {"model_id": "null"}, {"model_id": "whisper-1"}):
        with pytest.raises(ValidationFailed):
            el.parse_stt_form(bad)
    with pytest.raises(ValidationFailed):
        el.parse_stt_form({"model_id": "scribe_v1", "timestamps_granularity": "phoneme"})


def test_transcript_words_and_spacing() -> None:
    out = el.transcript_response(
        "hello world",
        [("hello", 0.1, 0.5), ("world", 0.6, 1.0)],
        language_code="eng",
        granularity="character",
        duration=1.2,
    )
    assert [w["type"] for w in out["words"]] == ["word", "spacing", "word"]
    assert out["words"][1] | {"speaker_id": None} == {
        "text": " ",
        "start": 0.5,
        "end": 0.6,
        "type": "spacing",
        "speaker_id": None,
        "logprob": 0.0,
    }
    assert "".join(c["text"] for c in out["words"][2]["characters"]) == "world"
    none = el.transcript_response(
        "x", [("x", 0, 1)], language_code="eng", granularity="none", duration=1
    )
    assert none["words"] == [] and none["text"] == "x"
    assert el.language_code_3("en-US") == "eng"


def _alignment(text: str, step_ms: int = 100) -> Alignment:
    return Alignment(
        tuple(text),
        tuple(i * step_ms for i in range(len(text))),
        tuple(step_ms for _ in text),
    )


def test_alignment_covers_text_with_absolute_times() -> None:
    text = "Hi there, friend. "
    b = el.AlignmentBuilder(text)
    first = b.clause("Hi there, ", 0, 0.0, 1.0, _alignment("Hi there, ", 100))
    # The second clause starts at offset 10 and 1.0 s into the audio; its alignment is missing,
    # so its characters share the clause's duration evenly.
    second = b.clause("friend. ", 10, 1.0, 0.8, None)
    assert b.rest() is None
    whole = el.merge_timings([first, second])
    assert "".join(whole.characters) == text
    assert list(whole.starts) == sorted(whole.starts)
    assert whole.starts[10] == pytest.approx(1.0)
    assert whole.ends[-1] == pytest.approx(1.8)
    # Alignment times past the clause audio are clamped into it.
    assert max(first.ends) <= 1.0
    js = whole.to_json()
    assert set(js) == {
        "characters",
        "character_start_times_seconds",
        "character_end_times_seconds",
    }


def test_alignment_fills_gaps_and_rest() -> None:
    text = "  ... Hello.  "
    b = el.AlignmentBuilder(text)
    # The "..." clause had nothing speakable: its characters come with the next clause.
    part = b.clause("Hello.  ", 6, 0.0, 0.5, _alignment("Hello.  ", 50))
    assert "".join(part.characters) == "  ... Hello.  "
    assert part.starts[:6] == (0.0,) * 6
    assert b.rest() is None
    b2 = el.AlignmentBuilder("One. Two")
    b2.clause("One. ", 0, 0.0, 0.4, _alignment("One. ", 50))
    rest = b2.rest()
    assert rest is not None and "".join(rest.characters) == "Two"
    assert rest.starts == (0.4, 0.4, 0.4)


def test_sealing_a_generation_ends_it_on_a_space() -> None:
    b = el.AlignmentBuilder()
    assert b.seal() == "", "nothing sent yet: nothing to end"
    b.extend("Hello there.")
    assert b.seal() == " "
    assert b.seal() == "", "already ends on a space"
    b.extend("Bye")
    assert b.seal() == " "
    b.clause("Hello there. ", 0, 0.0, 1.0, _alignment("Hello there. ", 50))
    b.clause("Bye ", 13, 1.0, 0.5, None)
    assert b.rest() is None


def test_voice_objects_and_pages() -> None:
    v = el.voice_object(VOICES[0])
    assert v["voice_id"] == "slt" and v["category"] == "premade"
    assert v["labels"]["gender"] == "female" and v["labels"]["language"] == "en"
    assert "eleven_monolingual_v1" in v["high_quality_base_model_ids"]
    assert "eleven_monolingual_v1" not in el.voice_object(VOICES[2])["high_quality_base_model_ids"]

    page = el.voices_page(VOICES, page_size=2)
    assert [x["voice_id"] for x in page["voices"]] == ["slt", "rms"]
    assert page["has_more"] and page["total_count"] == 3 and page["next_page_token"] == "2"
    last = el.voices_page(VOICES, page_size=2, next_page_token="2")
    assert [x["voice_id"] for x in last["voices"]] == ["de"] and not last["has_more"]
    assert last["next_page_token"] is None
    assert [x["voice_id"] for x in el.voices_page(VOICES, search="espeak")["voices"]] == ["de"]
    assert [x["voice_id"] for x in el.voices_page(VOICES, voice_ids=["rms"])["voices"]] == ["rms"]
    assert el.voices_page(VOICES, category="cloned")["voices"] == []
    by_name = el.voices_page(VOICES, sort="name", sort_direction="desc")["voices"]
    assert [x["name"] for x in by_name] == ["SLT", "RMS", "German"]
    for bad in ({"page_size": 0}, {"page_size": 101}, {"next_page_token": "abc"}):
        with pytest.raises(ValidationFailed):
            el.voices_page(VOICES, **bad)  # type: ignore[arg-type]


def test_models_and_subscription() -> None:
    models = el.model_list(max_text_chars=5000)
    ids = [m["model_id"] for m in models]
    assert {"eleven_flash_v2_5", "eleven_multilingual_v2", "eleven_turbo_v2_5"} <= set(ids)
    assert len(ids) == len(set(ids)) and set(ids) == el.MODELS
    assert all(m["can_do_text_to_speech"] for m in models)
    assert all(m["maximum_text_length_per_request"] <= 5000 for m in models)
    sub = el.subscription(characters=42, voices=3)
    assert sub["tier"] == "self-hosted" and sub["character_count"] == 42
    u = el.user(user_id="w", name="tests", characters=42, voices=3)
    assert u["subscription"]["character_count"] == 42 and u["xi_api_key"] is None
