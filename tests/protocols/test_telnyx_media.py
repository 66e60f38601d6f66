"""Telnyx media streaming codec against golden frames: real-shaped PCMU and PCMA calls, broken
frames, a call cut off mid-frame, and the frames going back."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicestream.errors import InvalidAudio, InvalidJSON, ProtocolError, VoiceStreamError
from voicestream.media.g711 import alaw_to_pcm16, ulaw_to_pcm16
from voicestream.protocols import telnyx_media as tx
from voicestream.protocols.call_media import Dtmf, Media, Stop

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "telnyx"
SID = "32de0dea-53cb-4b21-89a4-9e1819c043bc"
CCID = "v3:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"


def _lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def _bad_frames() -> list[tuple[str, str]]:
    cases = [json.loads(line) for line in _lines("bad_frames.jsonl")]
    return [(c["frame"], c["expect"]) for c in cases]


def _decoded(message: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(message)
    return body


@pytest.mark.parametrize(
    ("name", "encoding", "decode"),
    [("call_pcmu.jsonl", "PCMU", ulaw_to_pcm16), ("call_pcma.jsonl", "PCMA", alaw_to_pcm16)],
)
def test_a_whole_call_parses_in_order(name: str, encoding: str, decode: Any) -> None:
    stream = tx.TelnyxStream()
    events = [stream.receive(line) for line in _lines(name)]
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Connected", "Start"] + ["Media"] * 5 + ["Dtmf", "Mark", "StreamError", "Stop"]
    assert events[0] == tx.Connected("1.0.0")
    start = events[1]
    assert start == tx.Start(
        stream_id=SID,
        call_control_id=CCID,
        encoding=encoding,
        caller="+13122010094",
        callee="+13122123456",
        custom_parameters={"ticket": "eyJ.fixture.ticket"},
    )
    media = [e for e in events if isinstance(e, Media)]
    assert all(m.stream_id == SID and m.track == "inbound" for m in media)
    assert [len(m.payload) for m in media] == [tx.FRAME_BYTES] * 5
    assert [m.chunk for m in media] == [1, 2, 3, 4, 5]
    assert [m.timestamp_ms for m in media] == [20, 40, 60, 80, 100]
    # The fixture holds 100 ms of a 440 Hz tone at amplitude 8000, in the start's encoding.
    pcm = np.frombuffer(b"".join(decode(m.payload) for m in media), "<i2").astype(np.int32)
    assert 7500 < np.abs(pcm).max() < 8500
    crossings = np.count_nonzero(np.diff(np.signbit(pcm)))
    assert 80 <= crossings <= 92, crossings  # 2 × 440 Hz × 0.1 s
    assert events[7] == Dtmf(SID, "1")
    assert events[9] == tx.StreamError(
        SID, "100003", "malformed_frame", "The frame could not be parsed"
    )
    assert events[10] == Stop(SID, CCID)
    assert stream.stopped


@pytest.mark.parametrize(("frame", "expect"), _bad_frames())
def test_bad_frames_raise_typed_errors(frame: str, expect: str) -> None:
    with pytest.raises(VoiceStreamError) as exc:
        tx.parse(frame)
    assert exc.value.code == expect
    assert isinstance(exc.value, InvalidJSON | ProtocolError | InvalidAudio)


def test_a_call_cut_off_mid_frame() -> None:
    stream = tx.TelnyxStream()
    lines = _lines("truncated_call.jsonl")
    for line in lines[:-1]:
        stream.receive(line)
    with pytest.raises(InvalidJSON):
        stream.receive(lines[-1])


def test_bytes_that_are_not_utf8_are_invalid_json() -> None:
    with pytest.raises(InvalidJSON):
        tx.parse(b"\xff\xfe{")


@pytest.mark.parametrize("index", [2, 7, 8, 9, 10])  # media, dtmf, mark, error, stop
def test_nothing_but_connected_before_start(index: int) -> None:
    stream = tx.TelnyxStream()
    lines = _lines("call_pcmu.jsonl")
    stream.receive(lines[0])
    with pytest.raises(ProtocolError, match="before"):
        stream.receive(lines[index])


def test_ordering_rules_after_start() -> None:
    lines = _lines("call_pcmu.jsonl")
    stream = tx.TelnyxStream()
    stream.receive(lines[1])
    with pytest.raises(ProtocolError, match="second"):
        stream.receive(lines[1])
    with pytest.raises(ProtocolError, match="after"):
        stream.receive(lines[0])
    other = json.loads(lines[2])
    other["stream_id"] = "another-stream"
    with pytest.raises(ProtocolError, match="match"):
        stream.receive(json.dumps(other))
    # Frames without a stream id are this stream's (only "start" must carry one).
    anonymous = json.loads(lines[2])
    del anonymous["stream_id"]
    assert isinstance(stream.receive(json.dumps(anonymous)), Media)
    stream.receive(lines[10])
    with pytest.raises(ProtocolError, match="after"):
        stream.receive(lines[2])


def test_start_without_media_format_or_optional_fields_is_pcmu() -> None:
    frame = {"event": "start", "stream_id": "s1", "start": {"call_control_id": "v3:x"}}
    assert tx.parse(json.dumps(frame)) == tx.Start("s1", "v3:x", "PCMU")
    frame["start"]["media_format"] = {"encoding": "pcma", "sample_rate": 8000}  # type: ignore[index]
    start = tx.parse(json.dumps(frame))
    assert isinstance(start, tx.Start) and start.encoding == "PCMA"


def test_serialize_matches_the_wire_shape() -> None:
    assert _decoded(tx.serialize(tx.MediaOut(b"\xff\x7f"))) == {
        "event": "media",
        "media": {"payload": base64.b64encode(b"\xff\x7f").decode()},
    }
    assert _decoded(tx.serialize(tx.MarkOut("utt-1"))) == {
        "event": "mark",
        "mark": {"name": "utt-1"},
    }
    assert tx.serialize(tx.Clear()) == '{"event":"clear"}'


@pytest.mark.parametrize(
    ("name", "silence"), [("call_pcmu.jsonl", 0xFF), ("call_pcma.jsonl", 0xD5)]
)
def test_outgoing_audio_is_cut_into_20ms_frames_padded_with_the_codecs_silence(
    name: str, silence: int
) -> None:
    stream = tx.TelnyxStream()
    stream.receive(_lines(name)[1])
    assert stream.audio(b"\x01" * 100) == []
    frames = stream.audio(b"\x02" * 300)  # 400 bytes: two whole frames, 80 left over
    payloads = [base64.b64decode(_decoded(f)["media"]["payload"]) for f in frames]
    assert payloads == [b"\x01" * 100 + b"\x02" * 60, b"\x02" * 160]
    (last,) = stream.flush_audio()
    tail = base64.b64decode(_decoded(last)["media"]["payload"])
    assert tail == b"\x02" * 80 + bytes([silence]) * 80
    assert stream.flush_audio() == []


def test_no_audio_goes_out_before_the_stream_starts() -> None:
    with pytest.raises(ProtocolError):
        tx.TelnyxStream().audio(b"\xff" * 160)


def test_marks_are_booked_until_telnyx_echoes_them() -> None:
    lines = _lines("call_pcmu.jsonl")
    stream = tx.TelnyxStream()
    stream.receive(lines[1])
    first, second = _decoded(stream.mark()), _decoded(stream.mark())
    assert first == {"event": "mark", "mark": {"name": "utt-1"}}
    assert second["mark"]["name"] == "utt-2"
    assert stream.pending_marks == ["utt-1", "utt-2"]
    stream.receive(lines[8])  # Telnyx echoes utt-1
    assert stream.pending_marks == ["utt-2"] and stream.played_marks == ["utt-1"]
    stray = json.loads(lines[8])
    stray["mark"]["name"] = "someone-else"
    stream.receive(json.dumps(stray))
    assert stream.pending_marks == ["utt-2"]
    stream.audio(b"\x00" * 10)
    assert stream.clear() == '{"event":"clear"}'
    assert stream.flush_audio() == []  # clear drops the unsent partial frame too
