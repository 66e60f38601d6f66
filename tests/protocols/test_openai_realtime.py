"""OpenAI Realtime codecs against golden frames, without sockets: what the official SDK's GA and
beta clients send (captured from the SDK itself), broken and truncated frames, and the server
events of a whole conversation in both dialects, checked against the SDK's own event types."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from voicestream.errors import (
    EngineError,
    InvalidAudio,
    InvalidJSON,
    NotFound,
    ProtocolError,
    TextTooLong,
    VoiceStreamError,
)
from voicestream.protocols import openai_realtime as oa
from voicestream.protocols.openai_realtime_events import ResponseState, ServerEvents, dump

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "openai_realtime"


def _lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def _counting_ids() -> Any:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter)}"


# ---- client events -------------------------------------------------------------------------


def test_ga_client_events_parse() -> None:
    events = [oa.parse_client_event(line) for line in _lines("client_ga.jsonl")]
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "SessionUpdate",
        "SessionUpdate",
        "SessionUpdate",
        "AudioAppend",
        "AudioCommit",
        "AudioClear",
        "ItemCreate",
        "ItemCreate",
        "ResponseCreate",
        "ResponseCreate",
        "ResponseCancel",
        "ItemTruncate",
    ]
    first, second, third = (e.patch for e in events[:3] if isinstance(e, oa.SessionUpdate))
    assert first.dialect == "ga" and first.instructions == "Be brief."
    assert (first.input_format, first.output_format, first.voice) == ("pcm16", "pcm16", "marin")
    assert first.turn_detection == oa.TurnDetection(
        "server_vad", 0.6, 300, 500, create_response=True, interrupt_response=True
    )
    assert first.output_modalities == ("audio",)
    assert (second.input_format, second.output_format) == ("pcmu", "pcma")
    assert second.turn_detection == oa.TurnDetection("semantic_vad", eagerness="high")
    assert second.voice is None and second.instructions is None
    assert third.turn_detection is None  # manual turns
    assert third.input_format is None and third.transcription is oa.UNSET
    assert events[2].event_id == "evt_manual"
    assert events[3] == oa.AudioAppend(None, bytes([0, 0, 1, 0, 2, 0, 3, 0]))
    assert events[5] == oa.AudioClear("evt_clear")
    assert events[6] == oa.ItemCreate(None, None, None, "user", "Is parking free?")
    assert events[7] == oa.ItemCreate(
        None, "item_ctx", "item_prev", "system", "The user is a visitor."
    )
    assert events[8] == oa.ResponseCreate(None)
    assert events[9] == oa.ResponseCreate(None, "Answer in one sentence.", ("text",))
    assert events[10] == oa.ResponseCancel(None, "resp_123")
    assert events[11] == oa.ItemTruncate(None, "item_a", 0, 1500)


def test_beta_client_events_parse() -> None:
    events = [oa.parse_client_event(line) for line in _lines("client_beta.jsonl")]
    update = events[0]
    assert isinstance(update, oa.SessionUpdate)
    patch = update.patch
    assert patch.dialect == "beta"
    assert (patch.input_format, patch.output_format, patch.voice) == ("pcmu", "pcm16", "alloy")
    assert patch.output_modalities == ("audio",)  # ["text", "audio"]: audio with transcript
    assert patch.transcription == {"model": "whisper-1"}
    assert patch.turn_detection == oa.TurnDetection("server_vad", 0.5, silence_duration_ms=600)
    assert events[1] == oa.AudioAppend(None, b"\xff\xff")
    assert events[3] == oa.ItemCreate(None, None, None, "user", "Hello there.")
    assert events[4] == oa.ResponseCreate(None, "Say hi.", ("text",))
    assert events[5] == oa.ResponseCancel(None)


def test_a_session_takes_updates_in_turn() -> None:
    cfg = oa.SessionConfig()
    assert (cfg.input_format, cfg.output_format, cfg.output_modalities) == (
        "pcm16",
        "pcm16",
        ("audio",),
    )
    assert cfg.turn_detection == oa.TurnDetection()
    patches = [
        e.patch
        for e in map(oa.parse_client_event, _lines("client_ga.jsonl"))
        if isinstance(e, oa.SessionUpdate)
    ]
    cfg = cfg.updated(patches[0], "marin")
    assert (cfg.voice, cfg.instructions, cfg.turn_detection.threshold) == (
        "marin",
        "Be brief.",
        0.6,
    )
    cfg = cfg.updated(patches[1])
    # Only what the update names changes.
    assert (cfg.voice, cfg.instructions) == ("marin", "Be brief.")
    assert (cfg.input_format, cfg.output_format) == ("pcmu", "pcma")
    cfg = cfg.updated(patches[2])
    assert cfg.turn_detection is None and cfg.input_format == "pcmu"
    beta = oa.parse_client_event(_lines("client_beta.jsonl")[0])
    assert isinstance(beta, oa.SessionUpdate)
    assert cfg.updated(beta.patch).dialect == "beta"
    assert oa.RAW_FORMATS == {"pcm16": "pcm_24000", "pcmu": "ulaw_8000", "pcma": "alaw_8000"}


def _bad_events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in _lines("bad_events.jsonl")]


@pytest.mark.parametrize("case", _bad_events(), ids=lambda c: c["code"])
def test_bad_events_raise_what_the_error_event_needs(case: dict[str, Any]) -> None:
    with pytest.raises(VoiceStreamError) as exc:
        oa.parse_client_event(case["frame"])
    err = exc.value
    assert isinstance(err, InvalidJSON | ProtocolError | oa.BadRequest | InvalidAudio)
    event = ServerEvents(ids=_counting_ids()).error(err)
    assert event["type"] == "error" and event["event_id"] == "event_1"
    body = event["error"]
    assert (body["code"], body["param"], body["event_id"]) == (
        case["code"],
        case["param"],
        case["event_id"],
    )
    assert body["type"] == "invalid_request_error" and body["message"]


def test_every_good_frame_cut_short_is_invalid_json() -> None:
    for line in _lines("client_ga.jsonl") + _lines("client_beta.jsonl"):
        for cut in (1, len(line) // 2, len(line) - 1):
            with pytest.raises(InvalidJSON):
                oa.parse_client_event(line[:cut])


def test_limits_and_odd_shapes() -> None:
    long_text = "word " * 1000
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": ""}]}
    item["content"] = [{"type": "input_text", "text": long_text[:4000]}] * 2
    with pytest.raises(TextTooLong) as exc:
        oa.parse_client_event(json.dumps({"type": "conversation.item.create", "item": item}))
    assert exc.value.details["param"] == "item.content"
    # Several text parts join into one message; bytes frames parse like text frames.
    item["content"] = [{"type": "input_text", "text": "Hello"}, {"type": "text", "text": "there"}]
    raw = json.dumps({"type": "conversation.item.create", "item": item}).encode()
    parsed = oa.parse_client_event(raw)
    assert isinstance(parsed, oa.ItemCreate) and parsed.text == "Hello there"
    # GA audio/pcm without a rate means 24 kHz; a voice may be {"id": …}.
    update = {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "audio": {"output": {"format": {"type": "audio/pcm"}, "voice": {"id": "kal16"}}},
        },
    }
    parsed = oa.parse_client_event(json.dumps(update))
    assert isinstance(parsed, oa.SessionUpdate)
    assert (parsed.patch.output_format, parsed.patch.voice) == ("pcm16", {"id": "kal16"})
    # An update that only names instructions says nothing about its dialect.
    parsed = oa.parse_client_event('{"type":"session.update","session":{"instructions":"Hi."}}')
    assert isinstance(parsed, oa.SessionUpdate) and parsed.patch.dialect is None
    audio = base64.b64encode(bytes(range(256))).decode()
    parsed = oa.parse_client_event(
        json.dumps({"type": "input_audio_buffer.append", "audio": audio})
    )
    assert parsed == oa.AudioAppend(None, bytes(range(256)))


# ---- server events -------------------------------------------------------------------------


def _conversation(dialect: oa.Dialect) -> list[dict[str, Any]]:
    """One of everything, as a session would send it, with predictable ids."""
    ev = ServerEvents(dialect, ids=_counting_ids())
    cfg = oa.SessionConfig(dialect=dialect, instructions="Be brief.", voice="alloy")
    out = [
        ev.session_created(cfg, "sess_1"),
        ev.conversation_created("conv_1"),
        ev.session_updated(
            cfg.updated(oa.SessionPatch(input_format="pcmu", turn_detection=None)), "sess_1"
        ),
        ev.speech_started("item_u1", 480),
        ev.speech_stopped("item_u1", 2140),
        ev.committed("item_u1", None),
        ev.item_added(ev.user_audio_item("item_u1", None), None),
        ev.transcription_delta("item_u1", "is parking free"),
        ev.transcription_completed("item_u1", "is parking free", 1.66),
        *ev.item_done(ev.user_audio_item("item_u1", "is parking free")),
    ]
    spoken = ResponseState("resp_1", "item_a1", "conv_1", "audio", "pcm16", "alloy")
    out += ev.response_started(spoken, "item_u1")
    out.append(ev.audio_delta(spoken, b"\x01\x00\x02\x00"))
    spoken.transcript = "Parking is free."
    out.append(ev.text_delta(spoken, "Parking is free."))
    out += ev.response_finished(spoken, "completed")
    cut = ResponseState("resp_2", "item_a2", "conv_1", "audio", "pcmu", "alloy", "Well")
    out += ev.response_started(cut, "item_a1")
    out += ev.response_finished(cut, "cancelled", reason="turn_detected")
    written = ResponseState("resp_3", "item_a3", "conv_1", "text", "pcm16", "alloy", "Yes.")
    out += ev.response_started(written, "item_a2")
    out.append(ev.text_delta(written, "Yes."))
    out += ev.response_finished(
        written, "failed", error={"type": "server_error", "code": "engine_error"}
    )
    item = ev.text_item("item_t1", "user", "Thanks!")
    out += [ev.item_added(item, "item_a3"), *ev.item_done(item)]
    out.append(ev.item_truncated("item_a1", 0, 900))
    out.append(ev.cleared())
    out.append(ev.error(EngineError("the agent failed", details={"openai_code": "agent_error"})))
    out.append(ev.error(NotFound("no agent with id 'x'", details={"param": "agent_id"}), "evt_9"))
    return out


@pytest.mark.parametrize(
    ("dialect", "golden", "adapter"),
    [
        ("ga", "server_ga.jsonl", TypeAdapter(RealtimeServerEvent)),
        ("beta", "server_beta.jsonl", TypeAdapter(BetaServerEvent)),
    ],
)
def test_server_events_match_golden_and_the_sdk_types(
    dialect: oa.Dialect, golden: str, adapter: TypeAdapter[Any]
) -> None:
    events = _conversation(dialect)
    assert [dump(e) for e in events] == _lines(golden)
    for event in events:
        # Strict validation against the SDK's own models of that dialect.
        assert adapter.validate_python(event).type == event["type"]
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids)


def test_dialects_differ_only_where_openai_renamed() -> None:
    ga = [e["type"] for e in _conversation("ga")]
    beta = [e["type"] for e in _conversation("beta")]
    renamed = {
        "response.output_audio.delta": "response.audio.delta",
        "response.output_audio.done": "response.audio.done",
        "response.output_audio_transcript.delta": "response.audio_transcript.delta",
        "response.output_audio_transcript.done": "response.audio_transcript.done",
        "response.output_text.delta": "response.text.delta",
        "response.output_text.done": "response.text.done",
        "conversation.item.added": "conversation.item.created",
    }
    assert [renamed.get(t, t) for t in ga if t != "conversation.item.done"] == beta
    assert "conversation.item.done" not in beta


def test_a_cancelled_response_says_why_and_keeps_what_was_said() -> None:
    ev = ServerEvents(ids=_counting_ids())
    r = ResponseState("resp_1", "item_1", "conv_1", "audio", "pcm16", "alloy", "The tour")
    done = ev.response_finished(r, "cancelled", reason="client_cancelled")[-1]
    assert done["type"] == "response.done"
    response = done["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["output"][0]["content"] == [{"type": "output_audio", "transcript": "The tour"}]
    delta = ev.audio_delta(r, b"\x00\x01\x02")
    assert base64.b64decode(delta["delta"]) == b"\x00\x01\x02"
    assert (delta["response_id"], delta["item_id"], delta["output_index"]) == (
        "resp_1",
        "item_1",
        0,
    )


def test_error_events_for_server_faults() -> None:
    ev = ServerEvents(ids=_counting_ids())
    body = ev.error(EngineError("engine down"))["error"]
    assert body == {
        "type": "server_error",
        "code": "engine_error",
        "message": "engine down",
        "param": None,
        "event_id": None,
    }
    assert oa.new_id("event").startswith("event_") and oa.new_id("x") != oa.new_id("x")
