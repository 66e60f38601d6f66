"""OpenAI Realtime transcription-only sessions (``?intent=transcription``), as LiveKit's and
Pipecat's realtime STT open them, through the official SDK and the beta event; and
``response.create`` with no user input, which has the agent speak first (Pipecat's greeting)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from fakes.openai_server import FakeOpenAI
from helpers import normalize
from server.realtime_client import Recorder, chunks, kind, raw_events
from voicestream.engines.agents.knowledge import OPENING

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture

SILENCE_24K = bytes(48000)  # one second of 24 kHz s16le
FIRST = "Please call me back tomorrow afternoon."
SECOND = "The children are playing in the park."
COMPLETED = "conversation.item.input_audio_transcription.completed"
# LiveKit's realtime STT (livekit-plugins-openai stt.py): GA shape, server VAD of its own.
LIVEKIT_SESSION = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 600,
                "silence_duration_ms": 350,
            },
        }
    },
}


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/openai/v1", api_key=server.api_key, max_retries=0
    ) as c:
        yield c


async def _tts(server: RunningServer, text: str) -> bytes:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{server.url}/v1/tts",
            json={"text": text, "format": "pcm_24000", "voice": "rms"},
            headers=server.headers(),
        ) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.read()


def _words(text: str) -> set[str]:
    return set(normalize(text).split())


async def test_a_transcription_session_transcribes_each_utterance_and_never_answers(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    from openai.types.realtime import RealtimeServerEvent
    from pydantic import TypeAdapter

    speech = [await _tts(server, FIRST), await _tts(server, SECOND)]
    async with client.realtime.connect(
        model="gpt-4o-mini-transcribe", extra_query={"intent": "transcription"}
    ) as conn:
        rec = Recorder(aiter(conn))
        created = await rec.wait_event("session.created")
        assert created.session.type == "transcription"
        await conn.session.update(session=LIVEKIT_SESSION)  # type: ignore[arg-type]
        updated = await rec.wait_event("session.updated")
        assert updated.session.type == "transcription"
        assert updated.session.audio.input.turn_detection.silence_duration_ms == 350
        assert updated.session.audio.input.transcription.model == "gpt-4o-mini-transcribe"
        audio = SILENCE_24K[:12000] + speech[0] + SILENCE_24K + speech[1] + SILENCE_24K
        for piece in chunks(audio):
            await conn.input_audio_buffer.append(audio=piece)
        await rec.wait_for(lambda: len(rec.of(COMPLETED)) == 2)
        # Nothing answers in a transcription session, and asking for it is refused.
        await conn.response.create(event_id="evt_answer")
        refused = await rec.wait_event("error")
        assert (refused.error.code, refused.error.event_id) == ("unsupported_event", "evt_answer")
        # A round trip: whatever the utterances caused has arrived before this answer.
        await conn.session.update(session={"type": "transcription"})
        await rec.wait_for(lambda: len(rec.of("session.updated")) == 2)

    first, second = rec.of(COMPLETED)
    assert {"call", "back", "tomorrow"} <= _words(first.transcript), first.transcript
    assert {"children", "playing", "park"} <= _words(second.transcript), second.transcript
    starts = rec.of("input_audio_buffer.speech_started")
    stops = rec.of("input_audio_buffer.speech_stopped")
    committed = rec.of("input_audio_buffer.committed")
    deltas = rec.of("conversation.item.input_audio_transcription.delta")
    for i, done in enumerate((first, second)):
        assert starts[i].item_id == stops[i].item_id == committed[i].item_id == done.item_id
        assert done.content_index == 0
        # The deltas of an item come before its completion and add up to its transcript.
        mine = [d for d in deltas if d.item_id == done.item_id]
        assert "".join(d.delta for d in mine) == done.transcript
        assert rec.index(mine[-1]) < rec.index(done)
    assert not [e for e in rec.events if kind(e).startswith("response.")]
    strict = TypeAdapter(RealtimeServerEvent)
    for event in rec.events:
        assert strict.validate_python(event.model_dump()).type == event.type


async def test_the_beta_transcription_session_update_with_manual_commits(
    server: RunningServer,
) -> None:
    """What Pipecat does with its own VAD (no server turn detection: it commits each
    utterance), in the beta dialect's ``transcription_session.update``."""
    speech = await _tts(server, FIRST)
    beta = {**server.headers(), "OpenAI-Beta": "realtime=v1"}
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            f"{server.ws_url}/openai/v1/realtime", params={"intent": "transcription"}, headers=beta
        ) as ws,
    ):
        rec = Recorder(raw_events(ws))
        await ws.send_json(
            {
                "type": "transcription_session.update",
                "session": {
                    "input_audio_format": "pcm16",
                    "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                    "turn_detection": None,
                    "input_audio_noise_reduction": {"type": "near_field"},
                },
            }
        )
        updated = await rec.wait_event("transcription_session.updated")
        assert updated["session"]["turn_detection"] is None
        assert updated["session"]["input_audio_transcription"]["model"] == "gpt-4o-transcribe"
        audio = SILENCE_24K[:12000] + speech + SILENCE_24K[:12000]
        for piece in chunks(audio):
            await ws.send_json({"type": "input_audio_buffer.append", "audio": piece})
        await ws.send_json({"type": "input_audio_buffer.commit"})
        done = await rec.wait_event(COMPLETED)
        committed = await rec.wait_event("input_audio_buffer.committed")
    assert committed["item_id"] == done["item_id"]
    assert {"call", "back", "tomorrow"} <= _words(done["transcript"]), done["transcript"]
    assert not [e for e in rec.events if kind(e).startswith("response.") or kind(e) == "error"]


async def _agent(server: RunningServer, **fields: Any) -> dict[str, Any]:
    body = {"name": "greeter", "voice": "slt", **fields}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r,
    ):
        assert r.status == 201, await r.text()
        agent: dict[str, Any] = await r.json()
        return agent


async def _stt(server: RunningServer, pcm24: bytes) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{server.url}/v1/stt",
            data=pcm24,
            params={"format": "pcm_24000"},
            headers=server.headers(),
        ) as r,
    ):
        assert r.status == 200, await r.text()
        text: str = (await r.json())["text"]
        return text


async def test_response_create_without_user_input_has_the_agent_speak_first(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    """Pipecat's greeting: instructions, then a bare ``response.create``. The model answers
    from its instructions alone, as OpenAI's would."""
    greeting = "Welcome to the city museum, how can I help you today?"
    async with FakeOpenAI() as fake:
        fake.reply_text(greeting)
        llm = {"base_url": fake.base_url, "model": "fake-model", "api_key": "sk-test"}
        agent = await _agent(server, llm=llm)
        async with client.realtime.connect(
            model="gpt-realtime", extra_query={"agent_id": agent["id"]}
        ) as conn:
            rec = Recorder(aiter(conn))
            instructions = "You are the museum's guide. Greet the visitor first."
            await conn.session.update(session={"type": "realtime", "instructions": instructions})
            await rec.wait_event("session.updated")
            await conn.response.create()
            done = await rec.wait_event("response.done")
    assert done.response.status == "completed", done
    assert done.response.output[0].content[0].transcript == greeting
    said = _words(await _stt(server, rec.audio(done.response.id)))
    assert len({"welcome", "city", "museum", "help", "today"} & said) >= 3, said
    # The model got the instructions and nothing in the user's name.
    (seen,) = fake.requests
    assert seen.messages == [{"role": "system", "content": instructions}]
    assert rec.of("error") == []


async def test_response_create_without_user_input_without_an_llm(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    """The agent's own first message when it has one; the knowledge-base agent's opening
    question when it has none. Text-only, so nothing needs to be heard."""
    with_greeting = await _agent(server, first_message="Hello, this is the front desk.")
    texts: list[str] = []
    for agent in (with_greeting, await _agent(server)):
        async with client.realtime.connect(
            model="gpt-realtime", extra_query={"agent_id": agent["id"]}
        ) as conn:
            rec = Recorder(aiter(conn))
            await conn.response.create(response={"output_modalities": ["text"]})
            done = await rec.wait_event("response.done")
            assert done.response.status == "completed", done
            assert done.response.output_modalities == ["text"]
            texts.append(done.response.output[0].content[0].text)
            assert rec.of("error") == []
    assert texts == ["Hello, this is the front desk.", OPENING]


async def test_a_session_type_cannot_change_once_in_use(server: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(
            f"{server.ws_url}/openai/v1/realtime",
            params={"intent": "transcription"},
            headers=server.headers(),
        ) as ws,
    ):
        rec = Recorder(raw_events(ws))
        created = await rec.wait_event("session.created")
        assert created["session"]["type"] == "transcription"
        silence = base64.b64encode(bytes(4800)).decode()
        await ws.send_json({"type": "input_audio_buffer.append", "audio": silence})
        await ws.send_json({"type": "session.update", "session": {"type": "realtime"}})
        refused = await rec.wait_event("error")
        await ws.send_json({"type": "input_audio_buffer.clear"})
        await rec.wait_event("input_audio_buffer.cleared")  # the socket stays
    assert (refused["error"]["code"], refused["error"]["param"]) == (
        "invalid_value",
        "session.type",
    )
    assert not rec.of("session.updated")
