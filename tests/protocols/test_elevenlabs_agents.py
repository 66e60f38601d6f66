"""ElevenLabs Agents socket codec against golden messages: what the Python SDK and the JS client
send, broken and truncated frames, and the server messages byte for byte."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest

from voicestream.errors import (
    InvalidAudio,
    InvalidJSON,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    TextTooLong,
    UnknownVoice,
    VoiceStreamError,
)
from voicestream.protocols import elevenlabs_agents as ea

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "elevenlabs_agents"
FIXTURE_PCM = struct.pack("<8h", 0, 1000, -1000, 32767, -32768, 5, -5, 0)


def _lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def _bad_messages() -> list[tuple[str, str]]:
    cases = [json.loads(line) for line in _lines("bad_messages.jsonl")]
    return [(c["frame"], c["expect"]) for c in cases]


def test_a_python_sdk_session_parses_in_order() -> None:
    messages = [ea.parse_client_message(line) for line in _lines("sdk_session.jsonl")]
    assert messages == [
        # The SDK without an audio interface asks for text only, at the top of the override.
        ea.Initiation(ea.Overrides(text_only=True), {}, None),
        ea.UserAudio(FIXTURE_PCM),  # no "type" field
        ea.Pong(7),
        ea.UserMessage("What time is it?"),
        ea.ContextualUpdate("The user is looking at the pricing page."),
        ea.UserActivity(),
        ea.Ignored("client_tool_result"),
        ea.Ignored("feedback"),
        ea.UserMessage("And tomorrow?"),  # a multimodal message with text only
    ]
    assert not messages[0].overrides.changes_agent  # type: ignore[union-attr]


def test_a_js_initiation_with_every_override() -> None:
    msg = ea.parse_client_message((FIXTURES / "js_initiation.json").read_text())
    assert isinstance(msg, ea.Initiation)
    assert msg.overrides == ea.Overrides(
        prompt="You are {{persona}}, a helpful guide.",
        first_message="Hello {{name}}, welcome back!",
        language="pt-br",
        voice_id="rms",
        text_only=False,  # under "conversation", as the JS client puts it
    )
    assert msg.overrides.changes_agent
    assert msg.user_id == "user-42"
    # Values become text, as they will stand in a prompt.
    assert msg.dynamic_variables == {
        "name": "Ada",
        "persona": "Max",
        "visits": "3",
        "vip": "true",
        "score": "1.5",
    }


def test_text_only_under_conversation_counts_too() -> None:
    raw = json.dumps(
        {
            "type": "conversation_initiation_client_data",
            "conversation_config_override": {"conversation": {"text_only": True}},
        }
    )
    msg = ea.parse_client_message(raw)
    assert isinstance(msg, ea.Initiation) and msg.overrides.text_only


def test_fill_variables_replaces_known_placeholders_only() -> None:
    variables = {"name": "Ada", "city": "Paris"}
    assert ea.fill_variables("Hi {{name}}, from {{ city }}.", variables) == "Hi Ada, from Paris."
    assert ea.fill_variables("Hi {{unknown}}!", variables) == "Hi {{unknown}}!"
    assert ea.fill_variables("Hi {{name}}!", {}) == "Hi {{name}}!"
    assert ea.fill_variables("{single} braces stay", variables) == "{single} braces stay"


@pytest.mark.parametrize(("frame", "expect"), _bad_messages())
def test_bad_messages_raise_typed_errors(frame: str, expect: str) -> None:
    with pytest.raises(VoiceStreamError) as exc:
        ea.parse_client_message(frame)
    assert exc.value.code == expect
    assert isinstance(exc.value, InvalidJSON | ProtocolError | InvalidAudio | TextTooLong)
    assert exc.value.message  # something to show the client


def test_a_session_cut_off_mid_frame() -> None:
    lines = _lines("truncated_session.jsonl")
    for line in lines[:-1]:
        ea.parse_client_message(line)
    with pytest.raises(InvalidJSON):
        ea.parse_client_message(lines[-1])


def test_bytes_that_are_not_utf8_are_invalid_json() -> None:
    with pytest.raises(InvalidJSON):
        ea.parse_client_message(b"\xff\xfe{")


def test_an_oversized_audio_chunk_is_refused_before_decoding() -> None:
    for size in (ea.MAX_AUDIO_CHUNK + 2, ea.MAX_AUDIO_CHUNK + 30):
        chunk = base64.b64encode(bytes(size)).decode()
        with pytest.raises(PayloadTooLarge):
            ea.parse_client_message(json.dumps({"user_audio_chunk": chunk}))
    # The largest chunk allowed still parses.
    chunk = base64.b64encode(bytes(ea.MAX_AUDIO_CHUNK)).decode()
    msg = ea.parse_client_message(json.dumps({"user_audio_chunk": chunk}))
    assert msg == ea.UserAudio(bytes(ea.MAX_AUDIO_CHUNK))


def test_audio_chunk_with_a_type_is_tolerated() -> None:
    b64 = base64.b64encode(FIXTURE_PCM).decode()
    msg = ea.parse_client_message(json.dumps({"type": "user_audio_chunk", "user_audio_chunk": b64}))
    assert msg == ea.UserAudio(FIXTURE_PCM)


# ---- server messages, byte for byte ---------------------------------------------------------


def test_metadata() -> None:
    assert ea.conversation_initiation_metadata("conv-1") == (
        '{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":'
        '{"conversation_id":"conv-1","agent_output_audio_format":"pcm_16000",'
        '"user_input_audio_format":"pcm_16000"}}'
    )


def test_audio_round_trips_the_pcm() -> None:
    line = ea.audio(FIXTURE_PCM, 12)
    assert line == (
        '{"type":"audio","audio_event":{"audio_base_64":"AADoAxj8/38AgAUA+/8AAA==","event_id":12}}'
    )
    event = json.loads(line)["audio_event"]
    assert base64.b64decode(event["audio_base_64"]) == FIXTURE_PCM


def test_text_events() -> None:
    assert ea.agent_response("Hello there.", 3) == (
        '{"type":"agent_response","agent_response_event":'
        '{"agent_response":"Hello there.","event_id":3}}'
    )
    assert ea.user_transcript("Größe?", 4) == (
        '{"type":"user_transcript","user_transcription_event":'
        '{"user_transcript":"Größe?","event_id":4}}'
    )
    assert ea.agent_response_correction("One two three four.", "One two", 5) == (
        '{"type":"agent_response_correction","agent_response_correction_event":'
        '{"original_agent_response":"One two three four.","corrected_agent_response":"One two",'
        '"event_id":5}}'
    )


def test_control_events() -> None:
    assert ea.interruption(9) == '{"type":"interruption","interruption_event":{"event_id":9}}'
    # ping_ms is always present: the Python SDK indexes it without a default.
    assert ea.ping(1, None) == '{"type":"ping","ping_event":{"event_id":1,"ping_ms":null}}'
    assert ea.ping(2, 14) == '{"type":"ping","ping_event":{"event_id":2,"ping_ms":14}}'
    assert ea.vad_score(0.87654) == '{"type":"vad_score","vad_score_event":{"vad_score":0.877}}'


def test_every_server_message_has_a_type() -> None:
    # The JS client drops any message without one.
    lines = [
        ea.conversation_initiation_metadata("c"),
        ea.audio(b"\x00\x00", 1),
        ea.agent_response("a", 1),
        ea.agent_response_correction("a", "b", 1),
        ea.user_transcript("u", 1),
        ea.interruption(1),
        ea.ping(1, None),
        ea.vad_score(0.5),
        ea.error_for(ProtocolError("x"), close_code=1008),
    ]
    assert all(json.loads(line)["type"] for line in lines)


def test_error_messages_in_the_js_clients_shape() -> None:
    line = ea.error_for(ProtocolError("unknown message type 'dance'"), close_code=1008)
    assert json.loads(line) == {
        "type": "error",
        "error_event": {
            "code": 1008,
            "message": "unknown message type 'dance'",
            "error_type": "invalid_message",
            "reason": "protocol_error",
        },
    }
    voice = json.loads(
        ea.error_for(
            UnknownVoice("unknown voice 'x'", details={"voice": "x"}),
            close_code=1008,
            error_type="override_error",
        )
    )["error_event"]
    assert voice["error_type"] == "override_error" and voice["details"] == {"voice": "x"}
    assert (
        json.loads(ea.error_for(NotFound("no agent"), close_code=1008))["error_event"]["error_type"]
        == "value_error"
    )
    # A failed turn: our code as the reason, the server-error close code, no details.
    assert json.loads(
        ea.error("the agent failed", reason="engine_error", close_code=1011, error_type="unknown")
    ) == {
        "type": "error",
        "error_event": {
            "code": 1011,
            "message": "the agent failed",
            "error_type": "unknown",
            "reason": "engine_error",
        },
    }
