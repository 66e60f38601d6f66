"""Conversations over the WebSocket with real speech as the user's voice: the question is
transcribed, the knowledge-base agent answers from its documents, and the answer audio
transcribes back to the expected words."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from fakes.openai_server import FakeOpenAI
from helpers import normalize
from server.convai_client import ConvaiClient
from server.waiting import eventually

OPENING_HOURS = "Our office is open from nine in the morning to five in the evening on weekdays."
PARKING = "Parking is free in the garage behind the building for all visitors."
LONG_ANSWER = (
    "The museum tour takes about two hours. It starts in the main hall, continues through the "
    "painting gallery and the sculpture garden, and ends at the gift shop near the entrance. "
    "Guides speak English and German, and groups are limited to twenty people."
)


async def _agent(server, session: aiohttp.ClientSession, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "front desk",
        "instructions": "Answer visitor questions.",
        "voice": "slt",
        "knowledge": [OPENING_HOURS, PARKING, LONG_ANSWER],
        **extra,
    }
    async with session.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r:
        assert r.status == 201, await r.text()
        agent: dict[str, Any] = await r.json()
        return agent


async def _speech(server, session: aiohttp.ClientSession, text: str) -> bytes:
    async with session.post(
        f"{server.url}/v1/tts",
        json={"text": text, "format": "pcm_16000", "voice": "rms"},
        headers=server.headers(),
    ) as r:
        assert r.status == 200
        return await r.read()


async def _transcribe(server, session: aiohttp.ClientSession, pcm: bytes) -> str:
    async with session.post(
        f"{server.url}/v1/stt", data=pcm, params={"format": "pcm_16000"}, headers=server.headers()
    ) as r:
        assert r.status == 200, await r.text()
        text: str = (await r.json())["text"]
        return text


async def _connect(server, session, agent_id: str, **params: str) -> ConvaiClient:
    ws = await session.ws_connect(
        f"{server.ws_url}/v1/convai/stream",
        params={"agent_id": agent_id, **params},
        headers=server.headers(),
    )
    return ConvaiClient(ws)


async def test_spoken_question_gets_a_spoken_answer_from_the_documents(server) -> None:
    silence = bytes(32000)  # 1 s
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s, first_message="Hello, how can I help you?")
        question = await _speech(server, s, "What time is the office open?")
        client = await _connect(server, s, agent["id"])
        info = await client.wait_event("session")
        assert info["agent_id"] == agent["id"] and not info["resumed"]
        # The greeting is spoken first.
        await client.wait_event("agent_response", lambda e: "help" in e["text"])
        greeting = await client.audio_quiet_for(0.6)
        said = set(normalize(await _transcribe(server, s, greeting)).split())
        assert len(said & {"hello", "how", "can", "help", "you"}) >= 2, said

        before = len(client.audio)
        await client.send_speech(silence[:8000] + question + silence)
        heard = await client.wait_event("user_transcript", lambda e: e["final"])
        heard_words = normalize(heard["text"]).split()
        assert {"what", "time"} <= set(heard_words), heard  # pocketsphinx may hear "officer"
        assert any(w.startswith("office") for w in heard_words), heard
        answer = await client.wait_event("agent_response", lambda e: "office" in e["text"])
        assert answer["text"] == OPENING_HOURS
        await client.wait_for(lambda: len(client.audio) > before)
        audio = (await client.audio_quiet_for(0.6))[before:]
        words = set(normalize(await _transcribe(server, s, audio)).split())
        key = {"office", "open", "nine", "morning", "five", "evening", "weekdays"}
        assert len(key & words) >= 4, words  # the engines' own error rate is about 10 %
        assert any(
            e == {"type": "turn", "speaker": "agent", "state": "start"} for e in client.events
        )
        await client.ws.send_json({"type": "end"})
        await client.close()

        # The transcript is stored with the conversation.
        async with s.get(
            f"{server.url}/v1/convai/sessions/{info['conversation_id']}", headers=server.headers()
        ) as r:
            assert r.status == 200, await r.text()
            stored = await r.json()
    texts = [(t["role"], t["text"]) for t in stored["turns"]]
    assert texts[0] == ("agent", "Hello, how can I help you?")
    assert texts[1][0] == "user" and "office" in texts[1][1]
    assert texts[2] == ("agent", OPENING_HOURS)


MUSEUM_HOURS = "The museum opens at ten in the morning and closes at six in the evening."


async def test_a_natural_voice_asking_when_the_museum_opens_gets_the_documents_answer(
    server,
) -> None:
    """The issue's failing case with the default engines: a natural voice (Piper) asks, the
    server hears the question word for word, and the answer comes from the agent's documents."""
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s, knowledge=[OPENING_HOURS, PARKING, MUSEUM_HOURS])
        async with s.post(
            f"{server.url}/v1/tts",
            json={
                "text": "What time does the museum open?",
                "format": "pcm_16000",
                "voice": "en_US-joe-medium",
            },
            headers=server.headers(),
        ) as r:
            assert r.status == 200
            question = await r.read()
        client = await _connect(server, s, agent["id"])
        await client.wait_event("session")
        await client.send_speech(bytes(8000) + question + bytes(32000))
        heard = await client.wait_event("user_transcript", lambda e: e["final"])
        assert normalize(heard["text"]) == "what time does the museum open", heard
        answer = await client.wait_event("agent_response")
        assert answer["text"] == MUSEUM_HOURS
        await client.ws.send_json({"type": "end"})
        await client.close()


async def test_user_speech_during_agent_speech_interrupts_it(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        interruption = await _speech(server, s, "Wait, where can I park my car?")
        client = await _connect(server, s, agent["id"])
        await client.wait_event("session")
        await client.ws.send_json({"type": "text", "text": "How long does the museum tour take?"})
        await client.wait_event("agent_response", lambda e: "museum" in e["text"])
        # Let the long answer play for a while, then talk over it, in real time.
        await client.wait_for(lambda: len(client.audio) > 32000 * 1.5)
        # In real time, and then silence, as a microphone would go on sending.
        await client.send_speech(interruption, realtime=True)
        event = await client.wait_event("interruption")
        await client.send_speech(bytes(32000), realtime=True)
        stopped_at = client.event_times[client.events.index(event)]
        assert event["dropped_ms"] > 1000  # most of the long answer never played
        # The agent answers the new question.
        await client.wait_event("agent_response", lambda e: "Parking" in e["text"])
        # The new answer cannot start before the user stops talking (over a second later), so
        # audio arriving in the second after the interruption is the old answer's leftover:
        # at most what was already on the wire (the sender's 100 ms lead and a frame).
        await client.audio_quiet_for(0.6)
        leftover = [t for t, _ in client.audio_chunks if stopped_at < t < stopped_at + 1.0]
        assert len(leftover) <= 8, len(leftover)
        await client.close()


async def test_reconnect_within_grace_resumes_the_conversation(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        first = await _connect(server, s, agent["id"])
        info = await first.wait_event("session")
        await first.ws.send_json({"type": "text", "text": "Is parking free?"})
        await first.wait_event("agent_response")
        await first.close()  # dropped, not ended

        second = await _connect(server, s, agent["id"], session_id=info["session_id"])
        again = await second.wait_event("session")
        assert again["resumed"] and again["conversation_id"] == info["conversation_id"]
        await second.ws.send_json({"type": "text", "text": "When is the office open?"})
        await second.wait_event("agent_response", lambda e: "office" in e["text"])
        await second.ws.send_json({"type": "end"})
        await second.close()

        async def roles() -> list[str]:
            async with s.get(
                f"{server.url}/v1/convai/sessions/{info['conversation_id']}",
                headers=server.headers(),
            ) as r:
                return [t["role"] for t in (await r.json())["turns"]]

        # Turns are written behind the socket (through the outbox when the database is slow).
        await eventually(
            lambda: _equal_soon(roles, ["user", "agent", "user", "agent"]), what="all turns"
        )

        # An unknown session id is refused before the upgrade.
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await s.ws_connect(
                f"{server.ws_url}/v1/convai/stream",
                params={"agent_id": agent["id"], "session_id": "0" * 32},
                headers=server.headers(),
            )
        assert exc.value.status == 404


async def test_long_term_memory_recalls_an_earlier_session(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        one = await _connect(server, s, agent["id"], end_user_id="visitor-42")
        await one.wait_event("session")
        await one.ws.send_json({"type": "text", "text": "My favourite colour is green."})
        await one.wait_event("agent_response")
        await one.ws.send_json({"type": "end"})
        await one.close()
        await asyncio.sleep(0.3)

        two = await _connect(server, s, agent["id"], end_user_id="visitor-42")
        await two.wait_event("session")
        await two.ws.send_json({"type": "text", "text": "What is my favourite colour?"})
        reply = await two.wait_event("agent_response")
        assert "green" in reply["text"].lower(), reply
        await two.close()

        # Another end user has no such memory.
        three = await _connect(server, s, agent["id"], end_user_id="visitor-7")
        await three.wait_event("session")
        await three.ws.send_json({"type": "text", "text": "What is my favourite colour?"})
        reply = await three.wait_event("agent_response")
        assert "green" not in reply["text"].lower(), reply
        await three.close()


@pytest.mark.parametrize(
    ("payload", "code", "close"),
    [
        ("{nope", "invalid_json", 1007),
        ('{"type":"dance"}', "protocol_error", 1002),
        ('{"type":"dtmf","digits":"x"}', "protocol_error", 1002),
    ],
)
async def test_bad_control_messages(server, payload: str, code: str, close: int) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        client = await _connect(server, s, agent["id"])
        await client.wait_event("session")
        await client.ws.send_str(payload)
        err = await client.wait_event("error")
        assert err["code"] == code
        await client.wait_for(lambda: client.ws.closed)
        assert client.ws.close_code == close


async def test_bad_requests_are_refused_before_the_upgrade(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        cases = [
            ({}, 422),  # no agent_id
            ({"agent_id": "not-a-uuid"}, 404),
            ({"agent_id": "00000000-0000-0000-0000-000000000000"}, 404),
            ({"agent_id": agent["id"], "input_format": "mp3_44100_128"}, 400),
        ]
        for params, status in cases:
            async with s.get(
                f"{server.url}/v1/convai/stream", params=params, headers=server.headers()
            ) as r:
                assert r.status == status, (params, await r.text())
                assert "error" in await r.json()
        # No key, no ticket, private agent: 401.
        async with s.get(f"{server.url}/v1/convai/stream", params={"agent_id": agent["id"]}) as r:
            assert r.status == 401


async def test_silence_prompts_once_then_hangs_up(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        client = await _connect(server, s, agent["id"])
        info = await client.wait_event("session")
        await client.ws.send_json({"type": "config", "silence_timeout_s": 1})
        prompt = await client.wait_event("agent_response", within=10)
        assert prompt["text"] == "Are you still there?"
        end = await client.wait_event("session_end", within=15)
        assert end["reason"] == "silence_timeout"
        await client.wait_for(lambda: client.ws.closed)
        assert client.ws.close_code == 1000

        async def status() -> str:
            async with s.get(
                f"{server.url}/v1/convai/sessions/{info['conversation_id']}",
                headers=server.headers(),
            ) as r:
                return str((await r.json())["status"])

        await eventually(lambda: _equal_soon(status, "ended"), what="conversation ended")


async def test_user_activity_resets_the_silence_timer(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        client = await _connect(server, s, agent["id"])
        await client.wait_event("session")
        await client.ws.send_json({"type": "config", "silence_timeout_s": 2})
        for _ in range(3):
            await asyncio.sleep(1.2)
            await client.ws.send_json({"type": "dtmf", "digits": "1"})
        heard = [e for e in client.of_type("user_transcript") if e["final"]]
        assert heard and heard[0]["text"] == "I pressed 1"
        assert "Are you still there?" not in [e["text"] for e in client.of_type("agent_response")]
        await client.close()


@pytest.mark.parametrize(
    "config",
    [
        {"type": "config", "vad_threshold": 1.5},
        {"type": "config", "vad_min_silence_ms": 5},
        {"type": "config", "vad_min_speech_ms": 12.5},
        {"type": "config", "silence_timeout_s": -1},
    ],
)
async def test_bad_session_config_is_a_protocol_error(server, config) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        client = await _connect(server, s, agent["id"])
        await client.wait_event("session")
        await client.ws.send_json(config)
        err = await client.wait_event("error")
        assert err["code"] == "protocol_error"
        await client.wait_for(lambda: client.ws.closed)
        assert client.ws.close_code == 1002


async def test_config_after_audio_is_refused(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        client = await _connect(server, s, agent["id"])
        await client.wait_event("session")
        await client.ws.send_bytes(bytes(640))
        await client.ws.send_json({"type": "config", "vad_threshold": 0.6})
        err = await client.wait_event("error")
        assert err["code"] == "protocol_error" and "first message" in err["message"]


async def test_llm_agent_conversation_streams_tool_backed_answer(server) -> None:
    """An agent on an OpenAI-compatible endpoint (the local fake, through the official SDK):
    the model calls the knowledge tool, answers from it, and the answer is spoken."""
    async with FakeOpenAI() as fake, aiohttp.ClientSession() as s:
        fake.reply_tool_call("search_knowledge", {"query": "parking"})
        fake.reply_text("Parking is free in the garage behind the building.", delay_s=0.01)
        llm = {"base_url": fake.base_url, "model": "fake-model", "api_key": "sk-test"}
        agent = await _agent(server, s, llm=llm)
        client = await _connect(server, s, agent["id"])
        await client.wait_event("session")
        await client.ws.send_json({"type": "text", "text": "Where can I park?"})
        reply = await client.wait_event("agent_response")
        assert reply["text"] == "Parking is free in the garage behind the building."
        await client.wait_for(lambda: len(client.audio) > 0)
        audio = await client.audio_quiet_for(0.6)
        words = set(normalize(await _transcribe(server, s, audio)).split())
        assert len({"parking", "free", "garage", "building"} & words) >= 3, words
        await client.close()
    # The model saw the instructions, the question and the tool's result from the documents.
    first, second = fake.requests[0].messages, fake.requests[1].messages
    assert first[0]["role"] == "system" and "visitor" in first[0]["content"]
    assert first[-1] == {"role": "user", "content": "Where can I park?"}
    tool_results = [m for m in second if m["role"] == "tool"]
    assert tool_results and "garage" in tool_results[0]["content"]


async def test_an_llm_endpoint_that_keeps_failing_is_refused_at_once_with_its_circuit_open(
    server,
) -> None:
    """After five failed turns in a row (VOICESTREAM_BREAKER_FAILURES) the endpoint's circuit
    opens: the next turn is told dependency_unavailable at once, the endpoint is not called,
    and the circuit's state is on /metrics."""
    async with FakeOpenAI() as fake, aiohttp.ClientSession() as s:
        for _ in range(20):
            fake.reply_error(500, "the model server is down")
        llm = {"base_url": fake.base_url, "model": "fake-model", "api_key": "sk-test"}
        agent = await _agent(server, s, llm=llm)
        client = await _connect(server, s, agent["id"])
        await client.wait_event("session")
        for turn in range(6):
            await client.ws.send_json({"type": "text", "text": f"Question {turn}?"})
            await client.wait_for(lambda n=turn: len(client.of_type("error")) > n, 30)
        codes = [e["code"] for e in client.of_type("error")]
        calls = len(fake.requests)
        await client.close()
        async with s.get(server.url + "/metrics") as answer:
            metrics = await answer.text()
    assert codes == ["engine_error"] * 5 + ["dependency_unavailable"]
    assert calls == 10  # five turns, each tried twice by the client; none for the sixth
    host = fake.base_url.split("//")[1].split("/")[0]
    assert f'voicestream_circuit_state{{dependency="llm:{host}"}} 2.0' in metrics


async def _equal_soon(read: Callable[[], Awaitable[object]], expected: object) -> bool:
    return await read() == expected
