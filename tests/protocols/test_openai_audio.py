"""OpenAI audio codecs, without sockets: request parsing, mappings, events, response shapes."""

from __future__ import annotations

import base64
import json

import pytest

from voicestream.engines.base import Voice
from voicestream.errors import (
    AuthError,
    BadRequest,
    EmptyText,
    EngineError,
    InvalidAudio,
    NotFound,
    PayloadTooLarge,
    TextTooLong,
    UnknownVoice,
    UnsupportedFormat,
    ValidationFailed,
)
from voicestream.media.formats import SUPPORTED_FORMATS, parse_format
from voicestream.protocols import openai_audio as oa

OPENAI_VOICES = "alloy ash ballad coral echo fable onyx nova sage shimmer verse marin cedar".split()


def speech(**overrides: object) -> dict[str, object]:
    return {"model": "tts-1", "input": "Hello there.", "voice": "alloy", **overrides}


def test_without_a_catalog_every_openai_voice_maps_onto_a_flite_voice() -> None:
    assert set(oa.VOICE_MAP) == set(OPENAI_VOICES)
    assert set(oa.VOICE_MAP.values()) == {"slt", "rms", "awb", "kal16"}
    assert oa.resolve_voice("nova") == "slt"
    assert oa.resolve_voice("Onyx") == "kal16"
    # Our own ids pass through (the catalog decides later), as does OpenAI's voice object.
    assert oa.resolve_voice("rms") == "rms"
    assert oa.resolve_voice({"id": "awb"}) == "awb"
    with pytest.raises(UnknownVoice):
        oa.resolve_voice({"name": "x"})


def _voice(voice_id: str, language: str, gender: str, engine: str = "piper") -> Voice:
    return Voice(voice_id, voice_id, language, gender, 22050, engine)


def test_openai_voices_prefer_piper_voices_by_language_and_gender() -> None:
    flite = [_voice(v, "en-US", "female", "flite") for v in ("slt", "rms")]
    joe = _voice("en_US-joe-medium", "en-US", "male")
    # The packaged voice alone: every OpenAI name is it.
    for name in OPENAI_VOICES:
        assert oa.resolve_voice(name, [*flite, joe], "slt") == joe.id
    # More Piper voices: English first, then the gender OpenAI's voice is described with,
    # spread over the fitting voices in a fixed order.
    amy = _voice("en_US-amy-medium", "en-US", "female")
    kerstin = _voice("de_DE-kerstin-low", "de-DE", "female")
    lessac = _voice("en_US-lessac-medium", "en-US", "female")
    catalog = [*flite, kerstin, joe, amy, lessac]
    female = {oa.resolve_voice(n, catalog) for n in ("alloy", "coral", "nova", "shimmer")}
    assert female == {amy.id, lessac.id}
    assert {oa.resolve_voice(n, catalog) for n in ("onyx", "echo", "ash")} == {joe.id}
    assert oa.resolve_voice("Nova", catalog) == oa.resolve_voice("nova", catalog)
    # Only a German Piper voice: still Piper, whatever its language.
    assert oa.resolve_voice("onyx", [*flite, kerstin]) == kerstin.id
    # No Piper voice: the server's default voice, and without one in the catalog, flite.
    espeak = _voice("espeak-en-us", "en-US", "male", "espeak-ng")
    assert oa.resolve_voice("onyx", [*flite, espeak], "espeak-en-us") == "espeak-en-us"
    assert oa.resolve_voice("onyx", flite, "en_US-joe-medium") == "kal16"
    # Our own ids are never remapped.
    assert oa.resolve_voice("slt", catalog) == "slt"


def test_every_response_format_maps_onto_a_served_format() -> None:
    assert set(oa.SPEECH_FORMATS) == {"mp3", "opus", "aac", "flac", "wav", "pcm"}
    for ours in oa.SPEECH_FORMATS.values():
        assert ours in SUPPORTED_FORMATS
    assert parse_format(oa.SPEECH_FORMATS["pcm"]).sample_rate == 24000


def test_parse_speech_request_defaults_and_fields() -> None:
    req = oa.parse_speech_request(speech(), max_chars=100)
    assert (req.voice, req.response_format, req.output_format) == ("slt", "mp3", "mp3_24000_48")
    assert req.speed == 1.0 and not req.sse and req.instructions is None
    req = oa.parse_speech_request(
        speech(
            response_format="pcm",
            speed=1.5,
            stream_format="sse",
            instructions="cheerful",
            model="gpt-4o-mini-tts",
        ),
        max_chars=100,
    )
    assert (req.output_format, req.speed, req.sse, req.instructions) == (
        "pcm_24000",
        1.5,
        True,
        "cheerful",
    )


@pytest.mark.parametrize(
    ("overrides", "error", "param"),
    [
        ({"model": None}, BadRequest, "model"),
        ({"model": ""}, BadRequest, "model"),
        ({"model": "m" * 257}, BadRequest, "model"),
        ({"model": "tts\n1"}, BadRequest, "model"),
        ({"input": ""}, EmptyText, "input"),
        ({"input": "   "}, EmptyText, "input"),
        ({"input": 5}, BadRequest, "input"),
        ({"input": "x" * 101}, TextTooLong, "input"),
        ({"voice": 3}, UnknownVoice, "voice"),
        ({"response_format": "ogg"}, UnsupportedFormat, "response_format"),
        ({"speed": 0.1}, BadRequest, "speed"),
        ({"speed": 4.5}, BadRequest, "speed"),
        ({"speed": "fast"}, BadRequest, "speed"),
        ({"speed": True}, BadRequest, "speed"),
        ({"speed": float("nan")}, BadRequest, "speed"),
        ({"stream_format": "ws"}, BadRequest, "stream_format"),
        ({"instructions": 1}, BadRequest, "instructions"),
        ({"surprise": 1}, BadRequest, "surprise"),
    ],
)
def test_parse_speech_request_rejects_bad_input(
    overrides: dict[str, object], error: type[Exception], param: str
) -> None:
    with pytest.raises(error) as info:
        oa.parse_speech_request(speech(**overrides), max_chars=100)
    assert oa.error_body(info.value)["error"]["param"] == param  # type: ignore[arg-type]


def test_missing_voice_is_rejected() -> None:
    data = speech()
    del data["voice"]
    with pytest.raises(UnknownVoice):
        oa.parse_speech_request(data, max_chars=100)


def test_error_body_is_openai_shaped_and_statuses_follow_openai() -> None:
    body = oa.error_body(UnknownVoice("no such voice"))
    assert body == {
        "error": {
            "message": "no such voice",
            "type": "invalid_request_error",
            "param": "voice",
            "code": "unknown_voice",
        }
    }
    assert oa.error_status(EmptyText("x")) == 400  # 422 natively; OpenAI says 400
    assert oa.error_status(ValidationFailed("x")) == 400
    assert oa.error_status(InvalidAudio("x")) == 400
    assert oa.error_status(PayloadTooLarge("x")) == 413
    assert oa.error_status(AuthError("x")) == 401
    assert oa.error_status(NotFound("x")) == 404
    assert oa.error_status(EngineError("x")) == 502
    assert oa.error_body(InvalidAudio("bad"))["error"]["param"] == "file"
    assert oa.error_body(AuthError("x"))["error"]["type"] == "authentication_error"
    assert oa.error_body(NotFound("x"))["error"]["type"] == "not_found_error"
    assert oa.error_body(EngineError("x"))["error"] == {
        "message": "x",
        "type": "server_error",
        "param": None,
        "code": "engine_error",
    }


def test_models() -> None:
    listing = oa.model_list()
    ids = [m["id"] for m in listing["data"]]
    assert listing["object"] == "list"
    assert set(ids) == {*oa.SPEECH_MODELS, *oa.TRANSCRIPTION_MODELS}
    assert oa.model_object("whisper-1") == {
        "id": "whisper-1",
        "object": "model",
        "created": oa.MODELS_CREATED,
        "owned_by": "voicestream",
    }
    with pytest.raises(NotFound) as info:
        oa.model_object("gpt-5")
    assert oa.error_body(info.value)["error"]["param"] == "model"


def test_sse_events() -> None:
    raw = oa.sse(oa.speech_delta_event(b"\x00\x01\xff"))
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    event = json.loads(raw[6:])
    assert event["type"] == "speech.audio.delta"
    assert base64.b64decode(event["audio"]) == b"\x00\x01\xff"
    usage = oa.speech_usage(12, 1.0)
    assert usage == {"input_tokens": 12, "output_tokens": 50, "total_tokens": 62}
    assert oa.speech_done_event(usage) == {"type": "speech.audio.done", "usage": usage}
    assert oa.transcript_delta_event("hi") == {"type": "transcript.text.delta", "delta": "hi"}
    done = oa.transcript_done_event("hi there", 1.2)
    assert done == {
        "type": "transcript.text.done",
        "text": "hi there",
        "usage": {"type": "duration", "seconds": 2},
    }


def test_parse_transcription_options() -> None:
    opts = oa.parse_transcription_options({"model": ["whisper-1"]})
    assert opts.response_format == "json" and not opts.stream
    assert opts.granularities == frozenset({"segment"}) and opts.temperature == 0.0
    opts = oa.parse_transcription_options(
        {
            "model": ["gpt-4o-transcribe"],
            "response_format": ["verbose_json"],
            "timestamp_granularities[]": ["word", "segment"],
            "language": ["en"],
            "prompt": ["names: Ada"],
            "temperature": ["0.2"],
        }
    )
    assert opts.granularities == frozenset({"word", "segment"})
    assert (opts.language, opts.prompt, opts.temperature) == ("en", "names: Ada", 0.2)
    opts = oa.parse_transcription_options({"model": ["whisper-1"], "stream": ["true"]})
    assert opts.stream


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({}, "model"),
        ({"model": [" "]}, "model"),
        ({"model": ["m" * 257]}, "model"),
        ({"model": ["whisper-1"], "response_format": ["xml"]}, "response_format"),
        ({"model": ["whisper-1"], "temperature": ["hot"]}, "temperature"),
        ({"model": ["whisper-1"], "temperature": ["3"]}, "temperature"),
        (
            {"model": ["whisper-1"], "timestamp_granularities[]": ["char"]},
            "timestamp_granularities",
        ),
        (
            {"model": ["whisper-1"], "timestamp_granularities[]": ["word"]},
            "timestamp_granularities",
        ),
        ({"model": ["whisper-1"], "stream": ["maybe"]}, "stream"),
        ({"model": ["whisper-1"], "stream": ["true"], "response_format": ["srt"]}, "stream"),
    ],
)
def test_parse_transcription_options_rejects(fields: dict[str, list[str]], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        oa.parse_transcription_options(fields)
    assert oa.error_body(info.value)["error"]["param"] == param


@pytest.mark.parametrize("model", ["gpt-transcribe", "tts-1", "whisper-large-v9", "my model"])
def test_any_model_name_is_accepted(model: str) -> None:
    # Clients send their own defaults (Pipecat: gpt-transcribe); every name maps onto an engine.
    assert oa.parse_transcription_options({"model": [model]}).model == model
    assert oa.parse_translation_options({"model": [model]}).model == model
    assert oa.parse_speech_request(speech(model=model), max_chars=100).model == model


def test_parse_translation_options() -> None:
    opts = oa.parse_translation_options({"model": ["whisper-1"]})
    assert (opts.response_format, opts.prompt, opts.temperature) == ("json", None, 0.0)
    opts = oa.parse_translation_options(
        {
            "model": ["whisper-1"],
            "response_format": ["vtt"],
            "prompt": ["names: Ada"],
            "temperature": ["0.4"],
        }
    )
    assert (opts.response_format, opts.prompt, opts.temperature) == ("vtt", "names: Ada", 0.4)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({}, "model"),
        ({"model": ["whisper-1"], "response_format": ["xml"]}, "response_format"),
        ({"model": ["whisper-1"], "temperature": ["warm"]}, "temperature"),
        ({"model": ["whisper-1"], "temperature": ["-1"]}, "temperature"),
    ],
)
def test_parse_translation_options_rejects(fields: dict[str, list[str]], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        oa.parse_translation_options(fields)
    assert oa.error_body(info.value)["error"]["param"] == param


def test_verbose_translation_names_english() -> None:
    segments = [oa.TranscriptSegment(0.0, 1.0, "good morning", (("good", 0.0, 0.4),))]
    body = oa.verbose_transcription(
        segments,
        language="en",
        duration=1.0,
        granularities=frozenset({"segment"}),
        task="translate",
    )
    assert (body["task"], body["language"]) == ("translate", "english")
    assert body["text"] == "good morning"


def test_verbose_transcription_shape() -> None:
    segments = [
        oa.TranscriptSegment(0.1, 0.9, "hello world", (("hello", 0.1, 0.4), ("world", 0.5, 0.9))),
        oa.TranscriptSegment(1.5, 1.9, "again", (("again", 1.5, 1.9),)),
    ]
    body = oa.verbose_transcription(
        segments, language="en-US", duration=2.0004, granularities=frozenset({"word"})
    )
    assert body["language"] == "english" and body["duration"] == 2.0
    assert body["text"] == "hello world again"
    assert "segments" not in body
    assert body["words"] == [
        {"word": "hello", "start": 0.1, "end": 0.4},
        {"word": "world", "start": 0.5, "end": 0.9},
        {"word": "again", "start": 1.5, "end": 1.9},
    ]
    body = oa.verbose_transcription(
        segments, language="en-US", duration=2.0, granularities=frozenset({"segment"})
    )
    assert "words" not in body
    assert [(s["id"], s["start"], s["end"], s["text"]) for s in body["segments"]] == [
        (0, 0.1, 0.9, "hello world"),
        (1, 1.5, 1.9, "again"),
    ]
    assert oa.transcription_json("hi", 0.2) == {
        "text": "hi",
        "usage": {"type": "duration", "seconds": 1},
    }
