"""Twilio Media Streams codec against golden frames: a real-shaped call, broken frames, a call
cut off mid-frame."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from voicestream.errors import InvalidAudio, InvalidJSON, ProtocolError, VoiceStreamError
from voicestream.protocols import twilio_media as tw
from voicestream.protocols.call_media import Dtmf, Media, Stop

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "twilio"
SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def _lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def _bad_frames() -> list[tuple[str, str]]:
    cases = [json.loads(line) for line in _lines("bad_frames.jsonl")]
    return [(c["frame"], c["expect"]) for c in cases]


def test_a_whole_call_parses_in_order() -> None:
    stream = tw.TwilioStream()
    events = [stream.receive(line) for line in _lines("call.jsonl")]
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Connected", "Start"] + ["Media"] * 5 + ["Dtmf", "Mark", "Stop"]
    connected, start = events[0], events[1]
    assert connected == tw.Connected("Call", "1.0.0")
    assert isinstance(start, tw.Start)
    assert start.stream_sid == SID and start.call_sid.startswith("CA")
    assert start.tracks == ("inbound",)
    assert start.custom_parameters["ticket"] == "eyJ.fixture.ticket"
    media = [e for e in events if isinstance(e, Media)]
    assert all(len(m.payload) == tw.FRAME_BYTES for m in media)
    assert [m.chunk for m in media] == [1, 2, 3, 4, 5]
    assert [m.timestamp_ms for m in media] == [20, 40, 60, 80, 100]
    assert events[7] == Dtmf(SID, "1")
    assert events[9] == Stop(SID, "CA2f8c41c6d83c7c2b7aa6d3c5e4b1f0a9")
    assert stream.stopped


def test_unstarted_stream_has_no_sid() -> None:
    with pytest.raises(ProtocolError):
        _ = tw.TwilioStream().stream_sid


@pytest.mark.parametrize(("frame", "expect"), _bad_frames())
def test_bad_frames_raise_typed_errors(frame: str, expect: str) -> None:
    with pytest.raises(VoiceStreamError) as exc:
        tw.parse(frame)
    assert exc.value.code == expect
    assert isinstance(exc.value, InvalidJSON | ProtocolError | InvalidAudio)


def test_a_call_cut_off_mid_frame() -> None:
    stream = tw.TwilioStream()
    lines = _lines("truncated_call.jsonl")
    for line in lines[:-1]:
        stream.receive(line)
    with pytest.raises(InvalidJSON):
        stream.receive(lines[-1])


def test_bytes_that_are_not_utf8_are_invalid_json() -> None:
    with pytest.raises(InvalidJSON):
        tw.parse(b"\xff\xfe{")


@pytest.mark.parametrize("index", [2, 7, 8, 9])  # media, dtmf, mark, stop
def test_nothing_but_connected_before_start(index: int) -> None:
    stream = tw.TwilioStream()
    lines = _lines("call.jsonl")
    stream.receive(lines[0])
    with pytest.raises(ProtocolError, match="before"):
        stream.receive(lines[index])


def test_ordering_rules_after_start() -> None:
    lines = _lines("call.jsonl")
    stream = tw.TwilioStream()
    stream.receive(lines[1])
    with pytest.raises(ProtocolError, match="second"):
        stream.receive(lines[1])
    with pytest.raises(ProtocolError, match="after"):
        stream.receive(lines[0])
    other = json.loads(lines[2])
    other["streamSid"] = "MZelsewhere"
    with pytest.raises(ProtocolError, match="match"):
        stream.receive(json.dumps(other))
    stream.receive(lines[9])
    with pytest.raises(ProtocolError, match="after"):
        stream.receive(lines[2])


def test_start_without_media_format_or_parameters_is_accepted() -> None:
    start = tw.parse(json.dumps({"event": "start", "start": {"streamSid": "MZ1"}}))
    assert start == tw.Start("MZ1", "", "", ("inbound",), {})


def _decoded(message: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(message)
    return body


def test_serialize_matches_the_wire_shape() -> None:
    assert _decoded(tw.serialize(tw.MediaOut("MZ1", b"\xff\x7f"))) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": base64.b64encode(b"\xff\x7f").decode()},
    }
    assert _decoded(tw.serialize(tw.MarkOut("MZ1", "utt-1"))) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "utt-1"},
    }
    assert tw.serialize(tw.Clear("MZ1")) == '{"event":"clear","streamSid":"MZ1"}'


def test_outgoing_audio_is_cut_into_20ms_frames_and_padded_at_the_end() -> None:
    stream = tw.TwilioStream()
    stream.receive(_lines("call.jsonl")[1])
    assert stream.audio(b"\x01" * 100) == []
    frames = stream.audio(b"\x02" * 300)  # 400 bytes: two whole frames, 80 left over
    payloads = [base64.b64decode(_decoded(f)["media"]["payload"]) for f in frames]
    assert payloads == [b"\x01" * 100 + b"\x02" * 60, b"\x02" * 160]
    (last,) = stream.flush_audio()
    tail = base64.b64decode(_decoded(last)["media"]["payload"])
    assert tail == b"\x02" * 80 + b"\xff" * 80
    assert stream.flush_audio() == []


def test_marks_are_booked_until_twilio_echoes_them() -> None:
    lines = _lines("call.jsonl")
    stream = tw.TwilioStream()
    stream.receive(lines[1])
    first = _decoded(stream.mark())
    second = _decoded(stream.mark())
    assert (first["mark"]["name"], second["mark"]["name"]) == ("utt-1", "utt-2")
    assert stream.pending_marks == ["utt-1", "utt-2"]
    stream.receive(lines[8])  # Twilio echoes utt-1
    assert stream.pending_marks == ["utt-2"] and stream.played_marks == ["utt-1"]
    # An echo of a mark we never sent changes nothing.
    stray = json.loads(lines[8])
    stray["mark"]["name"] = "someone-else"
    stream.receive(json.dumps(stray))
    assert stream.pending_marks == ["utt-2"]
    stream.audio(b"\x00" * 10)
    assert _decoded(stream.clear()) == {"event": "clear", "streamSid": SID}
    assert stream.flush_audio() == []  # clear drops the unsent partial frame too
