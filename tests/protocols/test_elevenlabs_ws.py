"""The ElevenLabs TTS socket codec (stream-input, multi-stream-input), without sockets: golden
client sessions, broken and truncated messages, server messages read back by the SDK's types."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from elevenlabs.types import AudioOutputMulti, FinalOutputMulti

from voicestream.errors import (
    AuthError,
    InvalidJSON,
    ProtocolError,
    TextTooLong,
    ValidationFailed,
    VoiceStreamError,
)
from voicestream.protocols import elevenlabs as el
from voicestream.protocols import elevenlabs_ws as ews

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "elevenlabs_ws"


def _lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def test_module_imports_no_io_framework() -> None:
    tree = ast.parse(Path(ews.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                assert (name or "").split(".")[0] not in {"asyncio", "aiohttp", "asyncpg", "redis"}


# --- stream-input ---------------------------------------------------------------------------


def test_sdk_stream_input_session() -> None:
    lines = _lines("stream_input_sdk.jsonl")
    parsed = [
        ews.parse_stream_input(line, first=i == 0, max_text_chars=100)
        for i, line in enumerate(lines)
    ]
    assert parsed == [
        ews.StreamInit(""),
        ews.StreamText("Hello there. ", flush=False),
        ews.StreamText("How are you? ", flush=False),
        ews.StreamClose(),
    ]


def test_stream_input_messages() -> None:
    def parse(raw: str, first: bool = False) -> ews.StreamMessage:
        return ews.parse_stream_input(raw, first=first, max_text_chars=50)

    assert parse('{"text": " ", "voice_settings": null}', first=True) == ews.StreamInit("")
    assert parse('{"text": " Hi "}', first=True) == ews.StreamInit("Hi ")
    sped = '{"text": " ", "voice_settings": {"stability": 0.5, "speed": 1.2}}'
    assert parse(sped, first=True) == ews.StreamInit("", speed=1.2)
    assert parse('{"text": "a ", "voice_settings": {"speed": 0.8}}') == ews.StreamText(
        "a ", flush=False, speed=0.8
    )
    assert parse('{"text": "Hello ", "try_trigger_generation": true}') == ews.StreamText(
        "Hello ", flush=False
    )
    assert parse('{"text": "x ", "flush": true}') == ews.StreamText("x ", flush=True)
    assert parse('{"flush": true}') == ews.StreamText("", flush=True)
    assert parse('{"text": ""}') == ews.StreamClose()
    ok = '{"text": " ", "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]}}'
    assert parse(ok, first=True) == ews.StreamInit("")
    assert parse('{"text": "a ", "generator_config": {"chunk_length_schedule": [50]}}')


@pytest.mark.parametrize(
    ("message", "key"),
    [
        ({"text": " ", "xi-api-key": "sk_a"}, "sk_a"),  # the spec's property name
        ({"text": " ", "xi_api_key": "sk_b"}, "sk_b"),  # the spec's own example
        ({"text": " ", "authorization": "Bearer sk_c"}, "sk_c"),
        ({"text": " ", "authorization": "sk_d"}, "sk_d"),
        ({"text": " ", "xi-api-key": "  "}, None),
        ({"text": " "}, None),
    ],
)
def test_first_message_carries_the_key(message: dict[str, str], key: str | None) -> None:
    init = ews.parse_stream_input(json.dumps(message), first=True, max_text_chars=50)
    assert init == ews.StreamInit("", api_key=key)
    # Later messages are text only: a key there means nothing.
    later = ews.parse_stream_input(json.dumps(message), first=False, max_text_chars=50)
    assert isinstance(later, ews.StreamText) and later.text == " "


@pytest.mark.parametrize(
    ("raw", "first", "error"),
    [
        ("{", False, InvalidJSON),
        ('{"text": "Hello wor', False, InvalidJSON),  # truncated
        ("[1]", False, ProtocolError),
        ('{"text": ""}', True, ProtocolError),
        ('{"text": null}', False, ProtocolError),
        ("{}", True, ProtocolError),
        ('{"text": "' + "a" * 51 + '"}', False, TextTooLong),
        ('{"text": "a ", "flush": "yes"}', False, ValidationFailed),
        ('{"text": " ", "xi-api-key": 42}', True, ValidationFailed),
        ('{"text": " ", "voice_settings": {"speed": 9}}', True, ValidationFailed),
        ('{"text": " ", "voice_settings": "fast"}', True, ValidationFailed),
        (
            '{"text": " ", "generation_config": {"chunk_length_schedule": [501]}}',
            True,
            ValidationFailed,
        ),
        (
            '{"text": " ", "generation_config": {"chunk_length_schedule": "50"}}',
            True,
            ValidationFailed,
        ),
    ],
)
def test_stream_input_rejects(raw: str, first: bool, error: type[Exception]) -> None:
    with pytest.raises(error):
        ews.parse_stream_input(raw, first=first, max_text_chars=50)


def test_stream_query() -> None:
    assert ews.parse_stream_query({}) == 20
    assert ews.parse_stream_query({"model_id": "Ellipsis", "inactivity_timeout": "180"}) == 180
    assert ews.parse_stream_query({"model_id": "eleven_flash_v2_5"}) == 20
    for bad in ({"inactivity_timeout": "0"}, {"inactivity_timeout": "x"}, {"model_id": "m"}):
        with pytest.raises(ValidationFailed):
            ews.parse_stream_query(bad)


def test_sync_alignment_query() -> None:
    assert ews.parse_sync_alignment({}) is False
    assert ews.parse_sync_alignment({"sync_alignment": "true"}) is True
    assert ews.parse_sync_alignment({"sync_alignment": "False"}) is False
    with pytest.raises(ValidationFailed):
        ews.parse_sync_alignment({"sync_alignment": "maybe"})


def test_bearer_token() -> None:
    assert ews.bearer_token("Bearer sk_1") == "sk_1"
    assert ews.bearer_token("bearer  sk_2 ") == "sk_2"
    assert ews.bearer_token("sk_3") == "sk_3"
    assert ews.bearer_token("Bearer ") is None
    assert ews.bearer_token("") is None


# --- multi-stream-input ---------------------------------------------------------------------


def test_multi_session_in_order() -> None:
    parsed = [
        ews.parse_multi_input(line, max_text_chars=100) for line in _lines("multi_session.jsonl")
    ]
    assert parsed == [
        ews.KeepAlive(None),  # pipecat's context-less keep-alive
        ews.ContextText("ctx-1", "", flush=False, speed=1.0),  # voice_settings.speed
        ews.ContextText("ctx-1", "Hello there. ", flush=False),
        ews.ContextText("ctx-1", "", flush=True),
        ews.KeepAlive("ctx-1"),
        ews.ContextText("ctx-2", "", flush=False, api_key="sk_fixture"),
        ews.ContextText("ctx-2", "The tail. ", flush=True),
        ews.CloseContext("ctx-1"),
        ews.ContextText(ews.DEFAULT_CONTEXT_ID, "No context given. ", flush=False),
        ews.CloseSocket(),
    ]


def _bad_multi() -> list[tuple[str, str]]:
    cases = [json.loads(line) for line in _lines("multi_bad_messages.jsonl")]
    return [(c["frame"], c["expect"]) for c in cases]


@pytest.mark.parametrize(("frame", "expect"), _bad_multi())
def test_multi_bad_messages_raise_typed_errors(frame: str, expect: str) -> None:
    with pytest.raises(VoiceStreamError) as exc:
        ews.parse_multi_input(frame, max_text_chars=100)
    assert exc.value.code == expect and exc.value.message


def test_multi_limits() -> None:
    with pytest.raises(TextTooLong):
        ews.parse_multi_input(
            json.dumps({"text": "a" * 101, "context_id": "c"}), max_text_chars=100
        )
    with pytest.raises(ValidationFailed):
        ews.parse_multi_input(
            json.dumps({"text": "a", "context_id": "c" * 257}), max_text_chars=100
        )
    # close_socket wins over anything else in the message; close_context: false is no close.
    both = {"close_socket": True, "close_context": True, "context_id": "c"}
    assert ews.parse_multi_input(json.dumps(both), max_text_chars=10) == ews.CloseSocket()
    not_closing = {"text": "hi ", "context_id": "c", "close_context": False}
    assert ews.parse_multi_input(json.dumps(not_closing), max_text_chars=10) == ews.ContextText(
        "c", "hi ", flush=False
    )


# --- server messages ------------------------------------------------------------------------


def test_audio_output_golden() -> None:
    timing = el.CharTiming(("H", "i"), (1.0, 1.1), (1.1, 1.25))
    single = ews.audio_output(b"\x01\x02", timing, audio_offset=1.0)
    alignment = '{"chars":["H","i"],"charStartTimesMs":[0,100],"charDurationsMs":[100,150]}'
    assert single == (
        '{"audio":"AQI=","isFinal":null,'
        f'"normalizedAlignment":{alignment},"alignment":{alignment}}}'
    )
    multi = ews.audio_output(b"\x01\x02", timing, audio_offset=1.0, context_id="ctx-1")
    assert multi == single[:-1] + ',"contextId":"ctx-1"}'
    assert ews.audio_output(b"", None, audio_offset=0.0) == (
        '{"audio":"","isFinal":null,"normalizedAlignment":null,"alignment":null}'
    )
    # sync_alignment: the same timing measured from the start of the stream.
    synced = json.loads(ews.audio_output(b"", timing, audio_offset=0.0))
    assert synced["alignment"]["charStartTimesMs"] == [1000, 1100]
    # What pipecat and the SDK's own types read from it.
    parsed = AudioOutputMulti.model_validate(json.loads(multi))
    assert parsed.context_id == "ctx-1" and parsed.alignment is not None
    assert parsed.alignment.char_durations_ms == [100, 150]


def test_final_and_error_golden() -> None:
    assert ews.final_output() == '{"isFinal":true}'
    assert ews.final_output("ctx-1") == '{"isFinal":true,"contextId":"ctx-1"}'
    assert FinalOutputMulti.model_validate(json.loads(ews.final_output("c"))).context_id == "c"
    err = json.loads(ews.stream_error(ews.InputTimeout("no input")))
    assert err == {"error": "input_timeout_exceeded", "message": "no input"}
    too_many = json.loads(ews.stream_error(ews.TooManyContexts("five"), "ctx-6"))
    assert too_many == {
        "error": "max_active_conversations",
        "message": "five",
        "contextId": "ctx-6",
    }


def test_auth_errors_close_with_policy_violation() -> None:
    for err in (ews.MissingApiKey("m"), ews.InvalidApiKey("i")):
        assert isinstance(err, AuthError) and err.ws_close_code == 1008
    assert ews.TooManyContexts("x").ws_close_code == 1008
    assert ews.InputTimeout("x").ws_close_code == 1008
