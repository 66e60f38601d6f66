"""The Scribe realtime codec, without sockets: the query the official SDK builds, golden client
sessions, broken and truncated messages, server messages read back by the SDK's own types."""

from __future__ import annotations

import ast
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from elevenlabs.realtime.scribe import AudioFormat, CommitStrategy, ScribeRealtime
from elevenlabs.types import (
    CommittedTranscriptPayload,
    CommittedTranscriptWithTimestampsPayload,
    PartialTranscriptPayload,
    SessionStartedPayload,
)

from voicestream.errors import (
    AuthError,
    EngineError,
    InvalidJSON,
    Overloaded,
    ValidationFailed,
    VoiceStreamError,
)
from voicestream.protocols import elevenlabs_stt_realtime as srt

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "elevenlabs_stt_realtime"


def _lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def test_module_imports_no_io_framework() -> None:
    tree = ast.parse(Path(srt.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                assert (name or "").split(".")[0] not in {"asyncio", "aiohttp", "asyncpg", "redis"}


def _sdk_query(**options: Any) -> list[tuple[str, str]]:
    """The query string the official SDK puts on its socket URL, as pairs."""
    scribe = ScribeRealtime(api_key="k", base_url="http://127.0.0.1:1/elevenlabs")
    url = scribe._build_websocket_url(**options)
    parsed = urllib.parse.urlsplit(url)
    assert parsed.path == "/elevenlabs/v1/speech-to-text/realtime"
    return urllib.parse.parse_qsl(parsed.query)


def test_query_as_the_sdk_builds_it() -> None:
    config = srt.parse_realtime_query(
        _sdk_query(
            model_id="scribe_v2_realtime",
            audio_format=AudioFormat.PCM_16000.value,
            commit_strategy=CommitStrategy.MANUAL.value,
            include_timestamps=False,
        )
    )
    assert config.model_id == "scribe_v2_realtime"
    assert (config.audio_format, config.sample_rate) == ("pcm_16000", 16000)
    assert config.commit_strategy == "manual" and not config.include_timestamps
    assert config.vad_threshold is None and config.keyterms == ()

    full = srt.parse_realtime_query(
        _sdk_query(
            model_id="scribe_v2_realtime",
            audio_format=AudioFormat.ULAW_8000.value,
            commit_strategy=CommitStrategy.VAD.value,
            vad_silence_threshold_secs=0.8,
            vad_threshold=0.4,
            min_speech_duration_ms=120,
            min_silence_duration_ms=300,
            language_code="en",
            include_timestamps=True,
            keyterms=["voicestream", "Scribe"],
            no_verbatim=True,
        )
    )
    assert (full.audio_format, full.sample_rate, full.commit_strategy) == ("ulaw_8000", 8000, "vad")
    assert full.vad_silence_threshold_secs == 0.8 and full.vad_threshold == 0.4
    assert (full.min_speech_duration_ms, full.min_silence_duration_ms) == (120, 300)
    assert full.language_code == "en" and full.include_timestamps and full.no_verbatim
    assert full.keyterms == ("voicestream", "Scribe")


def test_query_defaults() -> None:
    config = srt.parse_realtime_query([("model_id", "scribe_v2_realtime")])
    assert (config.audio_format, config.commit_strategy) == ("pcm_16000", "manual")
    assert config.enable_logging and not config.include_timestamps


@pytest.mark.parametrize(
    "query",
    [
        [],
        [("model_id", "")],
        [("model_id", "whisper-1")],
        [("model_id", "scribe_v2_realtime"), ("audio_format", "mp3_44100_128")],
        [("model_id", "scribe_v2_realtime"), ("audio_format", "pcm_11025")],
        [("model_id", "scribe_v2_realtime"), ("commit_strategy", "auto")],
        [("model_id", "scribe_v2_realtime"), ("vad_threshold", "0.95")],
        [("model_id", "scribe_v2_realtime"), ("vad_threshold", "high")],
        [("model_id", "scribe_v2_realtime"), ("vad_silence_threshold_secs", "0.1")],
        [("model_id", "scribe_v2_realtime"), ("min_speech_duration_ms", "10")],
        [("model_id", "scribe_v2_realtime"), ("min_silence_duration_ms", "2.5")],
        [("model_id", "scribe_v2_realtime"), ("include_timestamps", "maybe")],
        [("model_id", "scribe_v2_realtime"), ("entity_redaction", "pii")],
        [("model_id", "scribe_v2_realtime"), ("transcript_edit", "be formal")],
        [("model_id", "scribe_v2_realtime"), ("keyterms", "x" * 21)],
        [("model_id", "scribe_v2_realtime")] + [("keyterms", f"t{i}") for i in range(51)],
    ],
)
def test_bad_queries(query: list[tuple[str, str]]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        srt.parse_realtime_query(query)
    assert exc.value.details["fields"][0]["field"]


def test_vad_settings_prefer_the_clients_values() -> None:
    defaults = {"threshold": 0.5, "min_silence_ms": 400, "min_speech_ms": 100}
    plain = srt.parse_realtime_query([("model_id", "scribe_v2_realtime")])
    assert srt.vad_settings(plain, **defaults) == srt.VadSettings(0.5, 400, 100)
    tuned = srt.parse_realtime_query(
        [
            ("model_id", "scribe_v2_realtime"),
            ("vad_silence_threshold_secs", "1.5"),
            ("min_silence_duration_ms", "200"),
            ("vad_threshold", "0.3"),
            ("min_speech_duration_ms", "250"),
        ]
    )
    assert srt.vad_settings(tuned, **defaults) == srt.VadSettings(0.3, 1500, 250)
    silence_only = srt.parse_realtime_query(
        [("model_id", "scribe_v2_realtime"), ("min_silence_duration_ms", "200")]
    )
    assert srt.vad_settings(silence_only, **defaults).min_silence_ms == 200


def test_language_matches() -> None:
    assert srt.language_matches("en", "en-US") and srt.language_matches("eng", "en-US")
    assert not srt.language_matches("de", "en-US")


# --- client messages ------------------------------------------------------------------------


def test_sdk_session_in_order() -> None:
    reader = srt.ChunkReader(sample_rate=16000, max_previous_text_chars=100)
    chunks = [reader.parse(line) for line in _lines("sdk_session.jsonl")]
    assert chunks == [
        srt.AudioChunk(b"\x00\x00\x01\x00\xff\xff", False, "So as I was saying,"),
        srt.AudioChunk(b"\x02\x00\x03\x00", False, None),
        srt.AudioChunk(b"", True, None),
        srt.AudioChunk(b"\x00\x00\x01\x00\xff\xff", True, None),
    ]


def test_previous_text_only_on_the_first_chunk() -> None:
    first = '{"message_type":"input_audio_chunk","audio_base_64":"","previous_text":"Hi"}'
    reader = srt.ChunkReader(sample_rate=16000, max_previous_text_chars=100)
    assert reader.parse(first).previous_text == "Hi"
    with pytest.raises(ValidationFailed, match="first audio chunk"):
        reader.parse(first)
    with pytest.raises(ValidationFailed, match="limit"):
        srt.ChunkReader(sample_rate=16000, max_previous_text_chars=1).parse(first)
    # A chunk without sample_rate is the session's rate.
    assert srt.ChunkReader(sample_rate=8000, max_previous_text_chars=1).parse(
        '{"message_type":"input_audio_chunk","audio_base_64":"/w=="}'
    ) == srt.AudioChunk(b"\xff", False, None)


def _bad_messages() -> list[tuple[str, str]]:
    cases = [json.loads(line) for line in _lines("bad_messages.jsonl")]
    return [(c["frame"], c["expect"]) for c in cases]


@pytest.mark.parametrize(("frame", "expect"), _bad_messages())
def test_bad_messages_raise_typed_errors(frame: str, expect: str) -> None:
    reader = srt.ChunkReader(sample_rate=16000, max_previous_text_chars=100)
    with pytest.raises(VoiceStreamError) as exc:
        reader.parse(frame)
    assert exc.value.code == expect and exc.value.message
    # Every one of them is an input_error for the client, which may send the next chunk.
    assert srt.error_type(exc.value) == "input_error"


# --- server messages ------------------------------------------------------------------------


def test_session_started_as_the_sdk_reads_it() -> None:
    config = srt.parse_realtime_query(
        [("model_id", "scribe_v2_realtime"), ("commit_strategy", "vad"), ("keyterms", "x")]
    )
    vad = srt.VadSettings(0.5, 400, 100)
    raw = srt.session_started("abc123", config, vad=vad, language_code="en")
    payload = SessionStartedPayload.model_validate(json.loads(raw))
    assert payload.message_type == "session_started" and payload.session_id == "abc123"
    assert payload.config.commit_strategy == "vad" and payload.config.sample_rate == 16000
    assert payload.config.vad_silence_threshold_secs == 0.4
    assert payload.config.min_silence_duration_ms == 400
    assert payload.config.keyterms == ["x"] and payload.config.language_code == "en"


def test_transcripts_golden() -> None:
    assert srt.partial_transcript("hello wor") == (
        '{"message_type":"partial_transcript","text":"hello wor"}'
    )
    assert srt.committed_transcript("hello world") == (
        '{"message_type":"committed_transcript","text":"hello world"}'
    )
    PartialTranscriptPayload.model_validate(json.loads(srt.partial_transcript("a")))
    CommittedTranscriptPayload.model_validate(json.loads(srt.committed_transcript("")))
    raw = srt.committed_transcript_with_timestamps(
        "hello world", [("hello", 0.1, 0.5), ("world", 0.6, 1.0)], language_code="en"
    )
    assert json.loads(raw) == {
        "message_type": "committed_transcript_with_timestamps",
        "text": "hello world",
        "language_code": "en",
        "words": [
            {"text": "hello", "start": 0.1, "end": 0.5, "type": "word", "logprob": 0.0},
            {"text": " ", "start": 0.5, "end": 0.6, "type": "spacing", "logprob": 0.0},
            {"text": "world", "start": 0.6, "end": 1.0, "type": "word", "logprob": 0.0},
        ],
    }
    payload = CommittedTranscriptWithTimestampsPayload.model_validate(json.loads(raw))
    assert payload.words is not None and [w.type for w in payload.words] == [
        "word",
        "spacing",
        "word",
    ]


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (AuthError("no key"), "auth_error"),
        (InvalidJSON("bad"), "input_error"),
        (srt.ChunkSizeExceeded("big"), "chunk_size_exceeded"),
        (srt.SessionTimeLimitExceeded("long"), "session_time_limit_exceeded"),
        (EngineError("boom"), "transcriber_error"),
        (Overloaded("busy"), "resource_exhausted"),
        (VoiceStreamError("odd"), "error"),
    ],
)
def test_error_messages(err: VoiceStreamError, kind: str) -> None:
    assert json.loads(srt.error_message(err)) == {"message_type": kind, "error": err.message}
