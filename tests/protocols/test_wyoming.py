"""Wyoming codec against golden bytes: a client session written by the reference library, fed
whole, in pieces and byte by byte; broken and truncated framing; typed requests; and our events
read back by the reference library.

``fixtures/wyoming/client_session.bin`` was written once with ``wyoming==1.10.2``'s own
``write_event`` (describe, transcribe, audio-start, three audio-chunks of a 440 Hz tone,
audio-stop, synthesize, a synthesize-start/-chunk/-chunk/synthesize/-stop stream, ping).
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from wyoming.asr import Transcript, TranscriptChunk
from wyoming.audio import AudioChunk as RefAudioChunk
from wyoming.audio import AudioStart as RefAudioStart
from wyoming.error import Error as RefError
from wyoming.event import read_event
from wyoming.info import Info as RefInfo

from voicestream.errors import InvalidJSON, PayloadTooLarge, ProtocolError, ValidationFailed
from voicestream.protocols import wyoming as wy

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wyoming"
SESSION = (FIXTURES / "client_session.bin").read_bytes()
SESSION_TYPES = [
    "describe",
    "transcribe",
    "audio-start",
    "audio-chunk",
    "audio-chunk",
    "audio-chunk",
    "audio-stop",
    "synthesize",
    "synthesize-start",
    "synthesize-chunk",
    "synthesize-chunk",
    "synthesize",
    "synthesize-stop",
    "ping",
]


def _pull_all(parser: wy.FrameParser) -> list[wy.Event]:
    out = []
    while (event := parser.next_event()) is not None:
        out.append(event)
    return out


# ---- framing: the golden session ------------------------------------------------------------


def test_the_golden_session_decodes_in_order() -> None:
    events = wy.decode(SESSION)
    assert [e.type for e in events] == SESSION_TYPES
    assert events[0] == wy.Event("describe")
    assert events[1].data == {"name": "pocketsphinx", "language": "en"}
    chunks = [e for e in events if e.type == "audio-chunk"]
    assert [len(c.payload) for c in chunks] == [2048, 2048, 1024]
    assert [c.data["timestamp"] for c in chunks] == [0, 64, 128]
    assert all(c.data["rate"] == 16000 and c.data["channels"] == 1 for c in chunks)
    # Non-ASCII text survives the data section (the reference writes it unescaped).
    assert events[7].data["text"] == "Héllo wörld. How are you?"
    assert events[13].data == {"text": "are you there"}


def test_byte_by_byte_feeding_gives_the_same_events() -> None:
    parser = wy.FrameParser()
    events: list[wy.Event] = []
    for i in range(len(SESSION)):
        events += parser.feed(SESSION[i : i + 1])
    assert events == wy.decode(SESSION)
    assert parser.buffered == 0


@pytest.mark.parametrize("seed", range(5))
def test_random_splits_give_the_same_events(seed: int) -> None:
    rng = random.Random(seed)
    parser = wy.FrameParser()
    events: list[wy.Event] = []
    pos = 0
    while pos < len(SESSION):
        step = rng.randint(1, 700)
        events += parser.feed(SESSION[pos : pos + step])
        pos += step
    parser.receive_eof()
    assert parser.next_event() is None
    assert events == wy.decode(SESSION)


def test_events_arrive_before_more_bytes_do() -> None:
    parser = wy.FrameParser()
    first_two = len(b'{"type": "describe", "version": "1.10.2"}\n')
    assert parser.feed(SESSION[:first_two]) == [wy.Event("describe")]
    assert parser.feed(SESSION[first_two : first_two + 10]) == []
    assert parser.buffered == 10


# ---- framing: hand-made events --------------------------------------------------------------


def test_header_only_event() -> None:
    assert wy.decode(b'{"type": "describe"}\n') == [wy.Event("describe")]


def test_inline_data_and_crlf() -> None:
    raw = b'{"type": "ping", "data": {"text": "hi"}}\r\n'
    assert wy.decode(raw) == [wy.Event("ping", {"text": "hi"})]


def test_data_section_is_merged_over_inline_data() -> None:
    extra = b'{"text": "from section", "extra": 1}'
    header = {"type": "ping", "data": {"text": "inline", "keep": True}, "data_length": len(extra)}
    raw = json.dumps(header).encode() + b"\n" + extra
    (event,) = wy.decode(raw)
    assert event.data == {"text": "from section", "keep": True, "extra": 1}


def test_payload_without_data() -> None:
    raw = b'{"type": "x-blob", "payload_length": 3}\nabc{"type": "describe"}\n'
    assert wy.decode(raw) == [wy.Event("x-blob", {}, b"abc"), wy.Event("describe")]


def test_zero_and_null_lengths_mean_none() -> None:
    raw = b'{"type": "a", "data_length": 0, "payload_length": null}\n{"type": "b"}\n'
    assert [e.type for e in wy.decode(raw)] == ["a", "b"]


def test_unknown_header_keys_are_ignored() -> None:
    raw = b'{"type": "describe", "version": "9.9.9", "whatever": [1, 2]}\n'
    assert wy.decode(raw) == [wy.Event("describe")]


# ---- framing: broken input ------------------------------------------------------------------

BROKEN: list[tuple[str, bytes, type[Exception], str]] = [
    ("not json", b"{type: describe}\n", InvalidJSON, "JSON"),
    ("blank line", b"\n", InvalidJSON, "JSON"),
    ("not utf-8", b'{"type": "\xff\xfe"}\n', InvalidJSON, "JSON"),
    ("array header", b'["describe"]\n', ProtocolError, "object"),
    ("missing type", b'{"data": {}}\n', ProtocolError, '"type"'),
    ("numeric type", b'{"type": 7}\n', ProtocolError, '"type"'),
    ("empty type", b'{"type": ""}\n', ProtocolError, '"type"'),
    ("long type", b'{"type": "' + b"a" * 101 + b'"}\n', ProtocolError, '"type"'),
    ("inline data list", b'{"type": "a", "data": [1]}\n', ProtocolError, '"data"'),
    ("negative data_length", b'{"type": "a", "data_length": -1}\n', ProtocolError, "data_length"),
    (
        "negative payload_length",
        b'{"type": "a", "payload_length": -5}\n',
        ProtocolError,
        "payload_length",
    ),
    ("float length", b'{"type": "a", "payload_length": 1.5}\n', ProtocolError, "payload_length"),
    ("string length", b'{"type": "a", "data_length": "4"}\n', ProtocolError, "data_length"),
    ("bool length", b'{"type": "a", "payload_length": true}\n', ProtocolError, "payload_length"),
    (
        "oversized payload",
        b'{"type": "a", "payload_length": 1048577}\n',
        PayloadTooLarge,
        "payload_length",
    ),
    ("oversized data", b'{"type": "a", "data_length": 1048577}\n', PayloadTooLarge, "data_length"),
    ("data not json", b'{"type": "a", "data_length": 3}\n{x}', InvalidJSON, "JSON"),
    ("data not object", b'{"type": "a", "data_length": 3}\n[1]', ProtocolError, "object"),
]


@pytest.mark.parametrize(
    ("raw", "error", "mentions"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_broken_framing_raises_a_typed_error(
    raw: bytes, error: type[Exception], mentions: str
) -> None:
    with pytest.raises(error) as exc:
        wy.decode(raw)
    assert mentions in str(exc.value)


def test_a_header_without_newline_is_bounded() -> None:
    parser = wy.FrameParser(max_header=1000)
    parser.receive_data(b'{"type": "a", "pad": "' + b"x" * 900)
    assert parser.next_event() is None  # still under the limit: wait for more
    parser.receive_data(b"x" * 200)
    with pytest.raises(PayloadTooLarge):
        parser.next_event()


def test_a_long_header_line_that_arrives_whole_is_rejected() -> None:
    parser = wy.FrameParser(max_header=100)
    with pytest.raises(PayloadTooLarge):
        parser.feed(b'{"type": "a", "pad": "' + b"x" * 200 + b'"}\n')


def test_limits_are_configurable() -> None:
    parser = wy.FrameParser(max_payload=10)
    with pytest.raises(PayloadTooLarge):
        parser.feed(b'{"type": "a", "payload_length": 11}\n')
    assert wy.FrameParser(max_payload=10).feed(b'{"type": "a", "payload_length": 10}\n') == []


def test_a_failed_parser_stays_failed() -> None:
    parser = wy.FrameParser()
    with pytest.raises(InvalidJSON):
        parser.feed(b"nonsense\n")
    with pytest.raises(InvalidJSON):
        parser.next_event()
    with pytest.raises(InvalidJSON):
        parser.receive_data(b'{"type": "describe"}\n')


def test_events_before_a_broken_one_are_delivered() -> None:
    parser = wy.FrameParser()
    parser.receive_data(b'{"type": "describe"}\n{"type": "ping"}\n{oops}\n')
    assert parser.next_event() == wy.Event("describe")
    assert parser.next_event() == wy.Event("ping")
    with pytest.raises(InvalidJSON):
        parser.next_event()


# ---- framing: the stream ends ---------------------------------------------------------------


def test_clean_eof() -> None:
    parser = wy.FrameParser()
    parser.feed(SESSION)
    parser.receive_eof()
    assert parser.next_event() is None


@pytest.mark.parametrize(
    "cut",
    [
        10,  # inside the first header
        len(SESSION) - 5,  # inside the ping's data section
    ],
)
def test_truncated_stream_at_eof_is_an_error(cut: int) -> None:
    with pytest.raises(ProtocolError, match="stream ended inside"):
        wy.decode(SESSION[:cut])


def test_truncated_payload_at_eof_is_an_error() -> None:
    raw = b'{"type": "audio-chunk", "payload_length": 2048}\n' + b"\0" * 1000
    parser = wy.FrameParser()
    assert parser.feed(raw) == []  # waiting for the rest
    parser.receive_eof()
    with pytest.raises(ProtocolError, match="1000 of 2048"):
        parser.next_event()


def test_no_data_after_eof() -> None:
    parser = wy.FrameParser()
    parser.receive_eof()
    with pytest.raises(RuntimeError):
        parser.receive_data(b"x")


# ---- encoding: read back by the reference library --------------------------------------------


def _reference_read(raw: bytes) -> list[object]:
    stream = io.BytesIO(raw)
    out = []
    while (event := read_event(stream)) is not None:
        out.append(event)
    return out


def test_header_only_encoding() -> None:
    assert wy.encode(wy.audio_stop()) == b'{"type": "audio-stop", "version": "1.10.2"}\n'


def test_our_audio_events_read_back_by_the_reference() -> None:
    pcm = bytes(range(256)) * 8
    raw = wy.encode(wy.audio_start(22050)) + wy.encode(wy.audio_chunk(pcm, 22050))
    start, chunk = _reference_read(raw)
    assert RefAudioStart.from_event(start) == RefAudioStart(rate=22050, width=2, channels=1)
    ref_chunk = RefAudioChunk.from_event(chunk)
    assert (ref_chunk.rate, ref_chunk.width, ref_chunk.channels) == (22050, 2, 1)
    assert ref_chunk.audio == pcm


def test_transcripts_and_errors_read_back_by_the_reference() -> None:
    raw = b"".join(
        wy.encode(e)
        for e in (
            wy.transcript_start(),
            wy.transcript_chunk("hello"),
            wy.transcript("hello wörld"),
            wy.transcript_stop(),
            wy.error("bad voice", "unknown_voice"),
            wy.synthesize_stopped(),
            wy.pong("x"),
        )
    )
    events = _reference_read(raw)
    types = [e.type for e in events]  # type: ignore[attr-defined]
    assert types == [
        "transcript-start",
        "transcript-chunk",
        "transcript",
        "transcript-stop",
        "error",
        "synthesize-stopped",
        "pong",
    ]
    assert TranscriptChunk.from_event(events[1]).text == "hello"  # type: ignore[arg-type]
    assert Transcript.from_event(events[2]).text == "hello wörld"  # type: ignore[arg-type]
    err = RefError.from_event(events[4])  # type: ignore[arg-type]
    assert (err.text, err.code) == ("bad voice", "unknown_voice")


def test_info_is_what_the_reference_expects() -> None:
    ours = wy.Attribution("voicestream", "")
    event = wy.info(
        asr=[
            wy.AsrProgram(
                "asr",
                ours,
                (wy.AsrModel("pocketsphinx", ("en-US", "en"), wy.Attribution("CMU", "u")),),
                version="0.1.0",
            )
        ],
        tts=[
            wy.TtsProgram(
                "tts",
                ours,
                (wy.TtsVoice("slt", ("en-US",), wy.Attribution("CMU", "u"), "SLT"),),
            )
        ],
    )
    (ref_event,) = _reference_read(wy.encode(event))
    info = RefInfo.from_event(ref_event)  # type: ignore[arg-type]
    assert info.asr[0].name == "asr" and info.asr[0].version == "0.1.0"
    assert info.asr[0].supports_transcript_streaming is True
    assert info.asr[0].models[0].languages == ["en-US", "en"]
    assert info.tts[0].voices[0].name == "slt"
    assert info.tts[0].voices[0].description == "SLT"
    assert info.tts[0].voices[0].installed is True
    assert info.tts[0].supports_synthesize_streaming is True
    assert info.wake == [] and info.handle == []


def test_encode_decode_round_trip() -> None:
    events = [
        wy.Event("ping", {"text": "ü"}),
        wy.Event("audio-chunk", {"rate": 8000}, b"\x00\x01" * 50),
        wy.Event("describe"),
    ]
    assert wy.decode(b"".join(wy.encode(e) for e in events)) == events


# ---- typed requests -------------------------------------------------------------------------


def test_the_golden_session_as_requests() -> None:
    requests = [wy.parse_request(e) for e in wy.decode(SESSION)]
    assert requests[0] == wy.Describe()
    assert requests[1] == wy.Transcribe("pocketsphinx", "en")
    assert requests[2] == wy.AudioStart(16000, 2, 1, 0)
    chunk = requests[3]
    assert isinstance(chunk, wy.AudioChunk) and len(chunk.audio) == 2048
    assert requests[6] == wy.AudioStop(160)
    assert requests[7] == wy.Synthesize("Héllo wörld. How are you?", wy.VoiceRequest(name="slt"))
    assert requests[8] == wy.SynthesizeStart(wy.VoiceRequest(language="en_US"))
    assert requests[9] == wy.SynthesizeChunk("The quick brown ")
    assert requests[12] == wy.SynthesizeStop()
    assert requests[13] == wy.Ping("are you there")


@pytest.mark.parametrize("kind", ["detect", "transcript", "run-satellite", "x-custom"])
def test_types_a_voice_server_does_not_take_are_unsupported(kind: str) -> None:
    assert wy.parse_request(wy.Event(kind, {"text": 1})) == wy.Unsupported(kind)


def test_empty_voice_object_means_no_voice() -> None:
    req = wy.parse_request(wy.Event("synthesize", {"text": "hi", "voice": {}}))
    assert req == wy.Synthesize("hi", None)


BAD_FIELDS: list[tuple[str, dict[str, object], str]] = [
    ("synthesize", {}, '"text"'),
    ("synthesize", {"text": 5}, '"text"'),
    ("synthesize", {"text": "hi", "voice": "slt"}, '"voice"'),
    ("synthesize", {"text": "hi", "voice": {"name": 3}}, '"name"'),
    ("synthesize", {"text": "hi", "text_format": "ssml"}, "text_format"),
    ("synthesize-chunk", {"text": None}, '"text"'),
    ("select-program", {}, '"name"'),
    ("transcribe", {"language": ["en"]}, '"language"'),
    ("audio-start", {"rate": "16000", "width": 2, "channels": 1}, '"rate"'),
    ("audio-start", {"rate": 16000, "width": 2}, '"channels"'),
    ("audio-start", {"rate": 0, "width": 2, "channels": 1}, '"rate"'),
    ("audio-start", {"rate": 16000, "width": True, "channels": 1}, '"width"'),
    ("audio-start", {"rate": 10**9, "width": 2, "channels": 1}, '"rate"'),
    ("audio-chunk", {"rate": 16000, "width": 2, "channels": 0}, '"channels"'),
    ("audio-chunk", {"rate": 16000, "width": 2, "channels": 1, "timestamp": -1}, "timestamp"),
    ("audio-stop", {"timestamp": "soon"}, "timestamp"),
    ("ping", {"text": 1}, '"text"'),
]


@pytest.mark.parametrize(("kind", "data", "mentions"), BAD_FIELDS)
def test_wrong_field_types_are_validation_errors(
    kind: str, data: dict[str, object], mentions: str
) -> None:
    with pytest.raises(ValidationFailed) as exc:
        wy.parse_request(wy.Event(kind, dict(data)))
    assert mentions in exc.value.message
    assert kind in exc.value.message
