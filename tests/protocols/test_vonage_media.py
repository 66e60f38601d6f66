"""Vonage WebSocket codec against golden frames: a real-shaped call of binary PCM and JSON text
events, broken frames, binary where text belongs and text where binary does, and the frames and
actions going back."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicestream.errors import InvalidAudio, InvalidJSON, ProtocolError, VoiceStreamError
from voicestream.protocols import vonage_media as vg

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vonage"


def _frame(entry: dict[str, Any]) -> str | bytes:
    """A fixture line: ``text`` is a text frame, ``binary`` (base64) a binary one."""
    if "binary" in entry:
        return base64.b64decode(entry["binary"])
    text: str = entry["text"]
    return text


def _call() -> list[str | bytes]:
    lines = (FIXTURES / "call.jsonl").read_text().splitlines()
    return [_frame(json.loads(line)) for line in lines]


def _bad_frames() -> list[tuple[str | bytes, str]]:
    lines = (FIXTURES / "bad_frames.jsonl").read_text().splitlines()
    return [(_frame(c), c["expect"]) for c in map(json.loads, lines)]


def _connected(stream: vg.VonageStream, rate: int = 16000) -> None:
    event = {"event": "websocket:connected", "content-type": f"audio/l16;rate={rate}"}
    stream.receive(json.dumps(event))


def test_a_whole_call_parses_in_order() -> None:
    stream = vg.VonageStream()
    events = [stream.receive(frame) for frame in _call()]
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Connected"] + ["Audio"] * 5 + ["Dtmf", "Dtmf", "Notify", "Cleared"]
    # The NCCO's string headers come back; a number among them is not a header of ours.
    assert events[0] == vg.Connected(
        16000, {"agent_id": "ag-1", "ticket": "eyJ.fixture.ticket", "caller": "447700900000"}
    )
    audio = [e for e in events if isinstance(e, vg.Audio)]
    assert [len(a.pcm) for a in audio] == [vg.frame_bytes(16000)] * 5 == [640] * 5
    # 100 ms of a 440 Hz tone at amplitude 8000, little-endian.
    pcm = np.frombuffer(b"".join(a.pcm for a in audio), "<i2").astype(np.int32)
    assert 7500 < np.abs(pcm).max() < 8500
    assert 80 <= np.count_nonzero(np.diff(np.signbit(pcm))) <= 92
    assert events[6] == vg.Dtmf("5")
    assert events[7] == vg.Dtmf("12#")  # the newer shape: {"dtmf": {"digits"}}
    assert events[8] == vg.Notify({"name": "utt-1"})


@pytest.mark.parametrize(("frame", "expect"), _bad_frames())
def test_bad_frames_raise_typed_errors(frame: str | bytes, expect: str) -> None:
    with pytest.raises(VoiceStreamError) as exc:
        vg.parse(frame)
    assert exc.value.code == expect
    assert isinstance(exc.value, InvalidJSON | ProtocolError | InvalidAudio)


@pytest.mark.parametrize(
    ("content_type", "rate"),
    [
        ("audio/l16;rate=16000", 16000),
        ("audio/l16;rate=8000", 8000),
        ("Audio/L16; rate=8000", 8000),
        ("audio/l16", 16000),
        (None, 16000),
    ],
)
def test_the_call_rate_comes_from_the_content_type(content_type: str | None, rate: int) -> None:
    event: dict[str, Any] = {"event": "websocket:connected"}
    if content_type is not None:
        event["content-type"] = content_type
    connected = vg.parse(json.dumps(event))
    assert isinstance(connected, vg.Connected) and connected.sample_rate == rate


def test_binary_before_connected_and_connected_as_binary_are_refused() -> None:
    call = _call()
    stream = vg.VonageStream()
    with pytest.raises(ProtocolError, match="binary audio before"):
        stream.receive(call[1])
    # The connected event sent as a binary frame is audio to us, and audio comes second.
    assert isinstance(call[0], str)
    with pytest.raises(ProtocolError, match="before"):
        stream.receive(call[0].encode())
    with pytest.raises(ProtocolError, match="an event before"):
        stream.receive(call[6])
    stream.receive(call[0])
    with pytest.raises(ProtocolError, match="second"):
        stream.receive(call[0])


def test_a_call_cut_off_mid_frame() -> None:
    stream = vg.VonageStream()
    call = _call()
    for frame in call[:6]:
        stream.receive(frame)
    assert isinstance(call[6], str)
    with pytest.raises(InvalidJSON):
        stream.receive(call[6][:20])
    with pytest.raises(InvalidAudio):  # half a sample
        stream.receive(b"\x00\x01\x02")


def test_serialize_matches_the_wire_shape() -> None:
    assert vg.serialize(vg.Clear()) == '{"action":"clear"}'
    notify = json.loads(vg.serialize(vg.NotifyOut({"name": "utt-1"})))
    assert notify == {"action": "notify", "payload": {"name": "utt-1"}}


@pytest.mark.parametrize("rate", [16000, 8000])
def test_outgoing_audio_is_cut_into_20ms_binary_frames_and_padded(rate: int) -> None:
    stream = vg.VonageStream()
    _connected(stream, rate)
    size = vg.frame_bytes(rate)
    assert size == rate // 50 * 2
    assert stream.audio(b"\x01\x00" * 50) == []
    samples = size // 2  # per frame
    frames = stream.audio(b"\x02\x00" * (samples - 50 + samples + 20))
    assert frames == [b"\x01\x00" * 50 + b"\x02\x00" * (samples - 50), b"\x02\x00" * samples]
    (last,) = stream.flush_audio()
    assert last == b"\x02\x00" * 20 + b"\x00" * (size - 40)
    assert stream.flush_audio() == []


def test_no_audio_goes_out_before_the_call_connects() -> None:
    with pytest.raises(ProtocolError):
        vg.VonageStream().audio(b"\x00" * 640)


def test_notify_marks_are_booked_until_vonage_echoes_them() -> None:
    stream = vg.VonageStream()
    _connected(stream)
    first = json.loads(stream.mark())
    assert first == {"action": "notify", "payload": {"name": "utt-1"}}
    stream.mark()
    assert stream.pending_marks == ["utt-1", "utt-2"]
    stream.receive(json.dumps({"event": "websocket:notify", "payload": {"name": "utt-1"}}))
    assert stream.pending_marks == ["utt-2"] and stream.played_marks == ["utt-1"]
    # Someone else's notify (no name, or not ours) changes nothing.
    stream.receive(json.dumps({"event": "websocket:notify", "payload": {"other": 1}}))
    stream.receive(json.dumps({"event": "websocket:notify", "payload": {"name": "x"}}))
    assert stream.pending_marks == ["utt-2"]
    stream.audio(b"\x00" * 10)
    assert stream.clear() == '{"action":"clear"}'
    assert stream.flush_audio() == []  # clear drops the unsent partial frame too
