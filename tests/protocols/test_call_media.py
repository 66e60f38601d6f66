"""The carrier base: every carrier's golden call read into the same call events, and the rules
every carrier's stream shares (text-only JSON carriers, the caller's track only)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from voicestream.errors import ProtocolError
from voicestream.protocols.call_media import (
    CallAudio,
    CallDtmf,
    CallEvent,
    CallNotice,
    CallStart,
    CallStop,
    CarrierStream,
)
from voicestream.protocols.telnyx_media import TelnyxStream
from voicestream.protocols.twilio_media import TwilioStream
from voicestream.protocols.vonage_media import VonageStream

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TICKET = "eyJ.fixture.ticket"


def _text_frames(name: str) -> list[str | bytes]:
    return list((FIXTURES / name).read_text().splitlines())


def _vonage_frames() -> list[str | bytes]:
    frames: list[str | bytes] = []
    for line in (FIXTURES / "vonage" / "call.jsonl").read_text().splitlines():
        entry = json.loads(line)
        frames.append(base64.b64decode(entry["binary"]) if "binary" in entry else entry["text"])
    return frames


def _kinds(events: list[CallEvent | None]) -> list[str]:
    return [type(e).__name__ if e is not None else "-" for e in events]


def _read(
    stream: CarrierStream[object, str | bytes], frames: list[str | bytes]
) -> list[CallEvent | None]:
    return [stream.call_event(frame) for frame in frames]


@pytest.mark.parametrize(
    ("stream", "fixture", "wire_format"),
    [
        (TwilioStream, "twilio/call.jsonl", "ulaw_8000"),
        (TelnyxStream, "telnyx/call_pcmu.jsonl", "ulaw_8000"),
        (TelnyxStream, "telnyx/call_pcma.jsonl", "alaw_8000"),
    ],
)
def test_json_carriers_read_a_call_into_the_same_call_events(
    stream: type[TwilioStream | TelnyxStream], fixture: str, wire_format: str
) -> None:
    frames = _text_frames(fixture)
    events = _read(stream(), frames)
    start, dtmf = events[1], events[7]
    assert isinstance(start, CallStart) and start.wire_format == wire_format
    assert start.parameters["ticket"] == TICKET
    audio = [e for e in events if isinstance(e, CallAudio)]
    assert len(audio) == 5 and all(len(a.payload) == 160 for a in audio)
    assert dtmf == CallDtmf("1")
    assert events[8] is None  # our mark, echoed: booked by the stream, nothing for the call
    assert isinstance(events[-1], CallStop)
    if stream is TelnyxStream:  # Telnyx reports a stream error and keeps the call up
        assert isinstance(events[9], CallNotice) and "malformed_frame" in events[9].message


def test_vonage_reads_a_call_into_the_same_call_events() -> None:
    events = _read(VonageStream(), _vonage_frames())
    assert _kinds(events) == ["CallStart"] + ["CallAudio"] * 5 + ["CallDtmf"] * 2 + ["-", "-"]
    start = events[0]
    assert isinstance(start, CallStart) and start.wire_format == "pcm_16000"
    assert start.parameters["ticket"] == TICKET
    assert events[7] == CallDtmf("12#")
    assert VonageStream.ends_on_close and not TwilioStream.ends_on_close


@pytest.mark.parametrize("stream", [TwilioStream, TelnyxStream])
def test_json_carriers_take_only_the_callers_track_and_only_text(
    stream: type[TwilioStream | TelnyxStream],
) -> None:
    fixture = "twilio/call.jsonl" if stream is TwilioStream else "telnyx/call_pcmu.jsonl"
    frames = _text_frames(fixture)
    call = stream()
    call.call_event(frames[1])
    outbound = json.loads(frames[2])
    outbound["media"]["track"] = "outbound"
    assert call.call_event(json.dumps(outbound)) is None
    with pytest.raises(ProtocolError, match="JSON text, not binary"):
        call.call_event(frames[2].encode())
