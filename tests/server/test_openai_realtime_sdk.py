"""The official ``openai`` SDK's Realtime client against ``/openai/v1/realtime`` on a real server,
with only ``base_url`` changed: speech in, VAD and transcription events, the agent's answer
as audio deltas that transcribe back to the agent's own transcript, G.711, manual turns,
cancelling, the beta client's event names, and bad input answered with ``error`` events."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from websockets.exceptions import ConnectionClosed

from fakes.openai_server import FakeOpenAI
from helpers import corpus_wer, normalize, sentences
from server.realtime_client import AUDIO_DELTAS, Recorder, chunks, kind, raw_events
from voicestream.rest.resources import API_KEYS, USAGE

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture

OPENING_HOURS = "Our office is open from nine in the morning to five in the evening on weekdays."
PARKING = "Parking is free in the garage behind the building for all visitors."
LONG_ANSWER = (
    "The museum tour takes about two hours. It starts in the main hall, continues through the "
    "painting gallery and the sculpture garden, and ends at the gift shop near the entrance. "
    "Guides speak English and German, and groups are limited to twenty people."
)
SILENCE_24K = bytes(48000)  # one second of 24 kHz s16le
GA_PCM = {"type": "audio/pcm", "rate": 24000}


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/openai/v1", api_key=server.api_key, max_retries=0
    ) as c:
        yield c


async def _agent(server: RunningServer, key: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "realtime desk",
        "instructions": "Answer visitor questions.",
        "voice": "slt",
        "knowledge": [OPENING_HOURS, PARKING, LONG_ANSWER],
        **extra,
    }
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{server.url}/v1/agents", json=body, headers=server.headers(key)) as r,
    ):
        assert r.status == 201, await r.text()
        agent: dict[str, Any] = await r.json()
        return agent


async def _tts(server: RunningServer, text: str, fmt: str = "pcm_24000") -> bytes:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{server.url}/v1/tts",
            json={"text": text, "format": fmt, "voice": "rms"},
            headers=server.headers(),
        ) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.read()


async def _stt(server: RunningServer, audio: bytes, fmt: str = "pcm_24000") -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{server.url}/v1/stt", data=audio, params={"format": fmt}, headers=server.headers()
        ) as r,
    ):
        assert r.status == 200, await r.text()
        text: str = (await r.json())["text"]
        return text


async def _usage(server: RunningServer, key: str) -> dict[str, float]:
    rt = server.app
    principal = await rt[API_KEYS].authenticate(key)
    assert principal is not None
    return await rt[USAGE].totals(principal.workspace_id)


async def _stored_turns(server: RunningServer, agent_id: str, key: str) -> list[tuple[str, str]]:
    """The one stored conversation of the agent, once the server has closed it."""
    async with aiohttp.ClientSession() as s:
        for _ in range(50):
            async with s.get(
                f"{server.url}/v1/convai/sessions",
                params={"agent_id": agent_id},
                headers=server.headers(key),
            ) as r:
                assert r.status == 200, await r.text()
                (listed,) = (await r.json())["sessions"]
            if listed["status"] == "ended":
                break
            await asyncio.sleep(0.1)  # the server closes its side after the client
        async with s.get(
            f"{server.url}/v1/convai/sessions/{listed['id']}", headers=server.headers(key)
        ) as r:
            stored = await r.json()
    assert stored["status"] == "ended" and stored["transport"] == "openai_realtime"
    return [(t["role"], t["text"]) for t in stored["turns"]]


def _stems(transcript: str, stems: tuple[str, ...]) -> int:
    """How many of ``stems`` begin a word of ``transcript`` (pocketsphinx may hear "parked")."""
    words = normalize(transcript).split()
    return sum(any(w.startswith(stem) for w in words) for stem in stems)


async def _speak(conn: Any, pcm: bytes, *, realtime: bool = False) -> None:
    for piece in chunks(pcm):
        await conn.input_audio_buffer.append(audio=piece)
        if realtime:
            await asyncio.sleep(0.1)


def _ga_session(**audio_input: Any) -> dict[str, Any]:
    return {
        "type": "realtime",
        "output_modalities": ["audio"],
        "audio": {
            "input": {"format": GA_PCM, **audio_input},
            "output": {"format": GA_PCM, "voice": "alloy"},
        },
    }


async def test_spoken_question_gets_a_spoken_answer(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    # A workspace of its own, so that the usage it books is this test's alone.
    rt = server.app
    _, own_key = await rt[API_KEYS].create(
        workspace=f"realtime-{uuid.uuid4().hex[:12]}", role="owner"
    )
    agent = await _agent(server, key=own_key)
    question = await _tts(server, "What time is the office open?")
    sent = SILENCE_24K[:12000] + question + SILENCE_24K + SILENCE_24K
    async with (
        openai.AsyncOpenAI(
            base_url=f"{server.url}/openai/v1", api_key=own_key, max_retries=0
        ) as own_client,
        own_client.realtime.connect(
            model="gpt-realtime", extra_query={"agent_id": agent["id"]}
        ) as conn,
    ):
        rec = Recorder(aiter(conn))
        created = await rec.wait_event("session.created")
        assert created.session.audio.input.format.rate == 24000
        await conn.session.update(
            session=_ga_session(turn_detection={"type": "server_vad", "silence_duration_ms": 500})
        )
        updated = await rec.wait_event("session.updated")
        assert updated.session.audio.input.turn_detection.type == "server_vad"
        await _speak(conn, sent)

        heard = await rec.wait_event("conversation.item.input_audio_transcription.completed")
        words = normalize(heard.transcript).split()
        assert {"what", "time"} <= set(words), heard.transcript
        assert any(w.startswith("office") for w in words), heard.transcript
        done = await rec.wait_event("response.done")
        assert done.response.status == "completed"
        transcript = rec.of("response.output_audio_transcript.done")[0].transcript
        assert transcript == OPENING_HOURS
        audio = rec.audio(done.response.id)
        said = set(normalize(await _stt(server, audio)).split())
        expected = {"office", "open", "nine", "morning", "five", "evening", "weekdays"}
        assert len(expected & said) >= 4, said

    # The events came in OpenAI's order and named the same items throughout.
    names = [kind(e) for e in rec.events]
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.done",
    ]
    positions = [names.index(n) for n in order]
    assert positions == sorted(positions), names
    started = rec.of("input_audio_buffer.speech_started")[0]
    stopped = rec.of("input_audio_buffer.speech_stopped")[0]
    committed = rec.of("input_audio_buffer.committed")[0]
    assert started.item_id == stopped.item_id == committed.item_id == heard.item_id
    # The question starts after half a second of silence and lasts over a second.
    assert 200 <= started.audio_start_ms <= 800, started.audio_start_ms
    assert stopped.audio_end_ms - started.audio_start_ms > 800
    deltas = [e for e in rec.events if kind(e) == "response.output_audio.delta"]
    assert {d.response_id for d in deltas} == {done.response.id}
    assert done.response.output[0].content[0].transcript == OPENING_HOURS
    ids = [e.event_id for e in rec.events]
    assert len(set(ids)) == len(ids)

    # The conversation is stored with the agent, and the usage is booked to the key's workspace.
    turns = await _stored_turns(server, agent["id"], own_key)
    assert turns == [("user", heard.transcript), ("agent", OPENING_HOURS)]
    used = await _usage(server, own_key)
    assert used["stt_seconds"] == pytest.approx(len(sent) / 48000, abs=0.01)
    assert used["tts_characters"] == len(OPENING_HOURS)


async def test_server_vad_transcribes_each_utterance_without_answering(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    refs = sentences()[:4]
    speech = b"".join([await _tts(server, s) + SILENCE_24K for s in refs])
    async with client.realtime.connect(model="gpt-realtime") as conn:
        rec = Recorder(aiter(conn))
        vad = {"type": "server_vad", "create_response": False, "interrupt_response": False}
        await conn.session.update(session=_ga_session(turn_detection=vad))
        await rec.wait_event("session.updated")
        await _speak(conn, SILENCE_24K[:12000] + speech + SILENCE_24K)
        name = "conversation.item.input_audio_transcription.completed"
        await rec.wait_for(lambda: len(rec.of(name)) >= len(refs))
        # A round trip: everything the utterances caused has been sent before this answer.
        await conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
        updated = await rec.wait_event("session.updated", lambda e: e.session.instructions)
        assert updated.session.audio.input.turn_detection.create_response is False
    heard = [e.transcript for e in rec.of(name)]
    assert corpus_wer(refs, heard) <= 0.35, heard
    starts = rec.of("input_audio_buffer.speech_started")
    stops = rec.of("input_audio_buffer.speech_stopped")
    assert len(starts) == len(stops) == len(refs)
    # Utterances follow each other in the input's own time line.
    times = [
        t for s, e in zip(starts, stops, strict=True) for t in (s.audio_start_ms, e.audio_end_ms)
    ]
    assert times == sorted(times), times
    assert rec.of("response.created") == []  # create_response: false


async def test_answers_say_their_transcripts_and_follow_the_instructions(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    """An LLM-backed agent (the local fake, which echoes the user): session instructions become
    its system prompt, and every answer's audio transcribes back to the answer's transcript."""
    refs = sentences()[4:7]
    async with FakeOpenAI() as fake:
        llm = {"base_url": fake.base_url, "model": "fake-model", "api_key": "sk-test"}
        agent = await _agent(server, llm=llm)
        async with client.realtime.connect(
            model="gpt-realtime", extra_query={"agent_id": agent["id"]}
        ) as conn:
            rec = Recorder(aiter(conn))
            await conn.session.update(
                session={**_ga_session(), "instructions": "Always answer like a pirate."}
            )
            await rec.wait_event("session.updated")
            # Context for the model: a system item answers nothing by itself.
            context = [{"type": "input_text", "text": "The visitor is called Ada."}]
            await conn.conversation.item.create(
                item={"type": "message", "role": "system", "content": context}
            )
            for i, text in enumerate(refs):
                content = [{"type": "input_text", "text": text}]
                await conn.conversation.item.create(
                    item={"type": "message", "role": "user", "content": content}
                )
                if i < 2:
                    await conn.response.create()
                else:  # instructions for this response only
                    await conn.response.create(response={"instructions": "Answer in French."})
                await rec.wait_for(lambda i=i: len(rec.of("response.done")) > i)
    done = rec.of("response.done")
    assert [d.response.status for d in done] == ["completed"] * 3
    transcripts = [d.response.output[0].content[0].transcript for d in done]
    assert transcripts == [f"You said: {t}" for t in refs]
    hyps = [await _stt(server, rec.audio(d.response.id)) for d in done]
    assert corpus_wer(transcripts, hyps) <= 0.35, hyps
    # The model saw the session's instructions instead of the agent's (a response's own for
    # the last), the system item, and each question.
    systems = [r.messages[0]["content"] for r in fake.requests]
    assert systems == ["Always answer like a pirate."] * 2 + ["Answer in French."]
    context = {"role": "system", "content": "The visitor is called Ada."}
    assert all(context in r.messages for r in fake.requests)
    assert [r.messages[-1]["content"] for r in fake.requests] == refs
    # Each item, then its response, in one chain of items.
    added = rec.of("conversation.item.added")
    assert [a.item.role for a in added] == ["system"] + ["user", "assistant"] * 3
    previous = [a.previous_item_id for a in added]
    assert previous == [None] + [a.item.id for a in added[:-1]]


async def test_mulaw_in_and_out(server: RunningServer, client: openai.AsyncOpenAI) -> None:
    """G.711 both ways: the μ-law answer and the same answer in 24 kHz PCM are both heard back."""
    agent = await _agent(server)
    question = await _tts(server, "When is the office open?", fmt="ulaw_8000")
    pcmu = {"type": "audio/pcmu"}
    parking = [{"type": "input_text", "text": "Where can I park?"}]
    async with client.realtime.connect(
        model="gpt-realtime", extra_query={"agent_id": agent["id"]}
    ) as conn:
        rec = Recorder(aiter(conn))
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"format": pcmu}, "output": {"format": pcmu, "voice": "echo"}},
            }
        )
        updated = await rec.wait_event("session.updated")
        assert updated.session.audio.output.format.type == "audio/pcmu"
        silence = b"\xff" * 8000
        await _speak(conn, silence[:4000] + question + silence + silence)
        heard = await rec.wait_event("conversation.item.input_audio_transcription.completed")
        assert len(heard.transcript.split()) >= 2, heard.transcript  # words, not which ones
        spoken = await rec.wait_event("response.done")
        for output in (pcmu, GA_PCM):  # the same question, answered in μ-law, then in PCM
            await conn.session.update(
                session={"type": "realtime", "audio": {"output": {"format": output}}}
            )
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": parking}
            )
            await conn.response.create()
            n = len(rec.of("response.done"))
            await rec.wait_for(lambda n=n: len(rec.of("response.done")) > n)
    first, mulaw, pcm = rec.of("response.done")
    assert first.response.id == spoken.response.id
    assert [d.response.status for d in (first, mulaw, pcm)] == ["completed"] * 3
    assert mulaw.response.audio.output.format.type == "audio/pcmu"
    assert pcm.response.audio.output.format.type == "audio/pcm"
    first_audio = rec.audio(first.response.id)
    said = first.response.output[0].content[0].transcript
    assert 0.1 < len(first_audio) / 8000 / len(said.split()) < 0.8, said  # μ-law: 1 byte/sample
    for done in (mulaw, pcm):
        assert done.response.output[0].content[0].transcript == PARKING
    # Piper draws fresh noise for every synthesis, so the two answers are not the same samples:
    # each is transcribed back on its own, the μ-law one as the 8 kHz audio a phone would carry.
    expected = {"parking", "free", "garage", "behind", "building", "visitors"}
    for audio, fmt in (
        (rec.audio(pcm.response.id), "pcm_24000"),
        (rec.audio(mulaw.response.id), "ulaw_8000"),
    ):
        words = set(normalize(await _stt(server, audio, fmt)).split())
        assert len(expected & words) >= 4, (fmt, words)
    seconds = [len(rec.audio(pcm.response.id)) / 48000, len(rec.audio(mulaw.response.id)) / 8000]
    assert seconds[0] == pytest.approx(seconds[1], rel=0.2)


async def test_manual_turns_commit_then_answer_on_request(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    agent = await _agent(server)
    question = await _tts(server, "Where can I park my car?")
    async with client.realtime.connect(
        model="gpt-realtime", extra_query={"agent_id": agent["id"]}
    ) as conn:
        rec = Recorder(aiter(conn))
        await conn.session.update(session=_ga_session(turn_detection=None))
        updated = await rec.wait_event("session.updated")
        assert updated.session.audio.input.turn_detection is None
        # Nothing to commit yet: OpenAI's error, naming the event, and the socket stays open.
        await conn.input_audio_buffer.commit(event_id="evt_commit_1")
        error = await rec.wait_event("error")
        assert error.error.code == "input_audio_buffer_commit_empty"
        assert error.error.event_id == "evt_commit_1"
        # Cleared audio is gone.
        await _speak(conn, SILENCE_24K)
        await conn.input_audio_buffer.clear()
        await rec.wait_event("input_audio_buffer.cleared")
        await conn.input_audio_buffer.commit(event_id="evt_commit_2")
        await rec.wait_event("error", lambda e: e.error.event_id == "evt_commit_2")

        await _speak(conn, SILENCE_24K[:12000] + question + SILENCE_24K[:12000])
        await conn.input_audio_buffer.commit()
        committed = await rec.wait_event("input_audio_buffer.committed")
        heard = await rec.wait_event("conversation.item.input_audio_transcription.completed")
        assert heard.item_id == committed.item_id
        assert _stems(heard.transcript, ("where", "park", "car")) >= 2, heard.transcript
        # No VAD events, and no answer until asked for one.
        await conn.session.update(session={"type": "realtime", "instructions": "Be kind."})
        await rec.wait_event("session.updated", lambda e: e.session.instructions == "Be kind.")
        assert rec.of("input_audio_buffer.speech_started") == []
        assert rec.of("response.created") == []
        await conn.response.create()
        done = await rec.wait_event("response.done")
    assert done.response.status == "completed"
    assert done.response.output[0].content[0].transcript == PARKING
    words = set(normalize(await _stt(server, rec.audio(done.response.id))).split())
    assert len({"parking", "free", "garage", "behind", "building", "visitors"} & words) >= 4, words


async def test_response_cancel_stops_the_answer(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    agent = await _agent(server)
    async with client.realtime.connect(
        model="gpt-realtime", extra_query={"agent_id": agent["id"]}
    ) as conn:
        rec = Recorder(aiter(conn))
        await conn.session.update(session=_ga_session())
        await rec.wait_event("session.updated")
        content = [{"type": "input_text", "text": "How long does the museum tour take?"}]
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": content}
        )
        await conn.response.create()
        created = await rec.wait_event("response.created")
        # A second response while one is active is refused, as OpenAI does.
        await conn.response.create(event_id="evt_again")
        busy = await rec.wait_event("error")
        assert busy.error.code == "conversation_already_has_active_response"
        assert busy.error.event_id == "evt_again"
        # Let a second of the long answer play, then cancel it.
        await rec.wait_for(lambda: len(rec.audio(created.response.id)) > 48000)
        await conn.response.cancel()
        # Asking again at once is fine: the cancelled response no longer counts.
        content = [{"type": "input_text", "text": "Where can I park?"}]
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": content}
        )
        await conn.response.create(event_id="evt_next")
        done = await rec.wait_event("response.done")
        nxt = await rec.wait_event("response.done", lambda e: e.response.id != done.response.id)
        # Nothing left to cancel now.
        await conn.response.cancel(event_id="evt_cancel_again")
        idle = await rec.wait_event("error", lambda e: e.error.event_id == "evt_cancel_again")
        assert idle.error.code == "response_cancel_not_active"
    assert [e.error.event_id for e in rec.of("error")] == ["evt_again", "evt_cancel_again"]
    assert nxt.response.status == "completed"
    assert nxt.response.output[0].content[0].transcript == PARKING
    assert done.response.id == created.response.id
    assert done.response.status == "cancelled"
    assert done.response.status_details.reason == "client_cancelled"
    assert done.response.output[0].status == "incomplete"
    after = [
        e
        for e in rec.events[rec.index(done) :]
        if kind(e) in AUDIO_DELTAS and e.response_id == done.response.id
    ]
    assert after == []
    seconds = len(rec.audio(done.response.id)) / 48000
    assert 1.0 <= seconds < 6.0, seconds  # the whole answer runs for about fifteen


async def test_speaking_over_an_answer_interrupts_it(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    agent = await _agent(server)
    interruption = await _tts(server, "Wait, where can I park my car?")
    async with client.realtime.connect(
        model="gpt-realtime", extra_query={"agent_id": agent["id"]}
    ) as conn:
        rec = Recorder(aiter(conn))
        await conn.session.update(session=_ga_session())
        await rec.wait_event("session.updated")
        content = [{"type": "input_text", "text": "How long does the museum tour take?"}]
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": content}
        )
        await conn.response.create()
        first = await rec.wait_event("response.created")
        await rec.wait_for(lambda: len(rec.audio(first.response.id)) > 48000 * 1.5)
        # A microphone goes on sending, in real time.
        await _speak(conn, interruption + SILENCE_24K, realtime=True)
        cancelled = await rec.wait_event("response.done")
        answer = await rec.wait_event("response.done", lambda e: e.response.id != first.response.id)
    started = rec.of("input_audio_buffer.speech_started")[0]
    assert cancelled.response.id == first.response.id
    assert cancelled.response.status == "cancelled"
    assert cancelled.response.status_details.reason == "turn_detected"
    assert rec.index(started) < rec.index(cancelled)
    # The new question was answered in full.
    assert answer.response.status == "completed"
    assert answer.response.output[0].content[0].transcript == PARKING


async def test_beta_client_gets_beta_event_names(server: RunningServer) -> None:
    agent = await _agent(server)
    # The beta client always builds wss:// URLs: a plain-HTTP server is named explicitly.
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/openai/v1",
        websocket_base_url=f"{server.ws_url}/openai/v1",
        api_key=server.api_key,
        max_retries=0,
    ) as beta_client:
        async with beta_client.beta.realtime.connect(
            model="gpt-4o-realtime-preview", extra_query={"agent_id": agent["id"]}
        ) as conn:
            rec = Recorder(aiter(conn))
            await conn.session.update(
                session={
                    "modalities": ["text", "audio"],
                    "voice": "echo",
                    "input_audio_format": "pcm16",
                    "output_audio_format": "pcm16",
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
                }
            )
            updated = await rec.wait_event("session.updated")
            content = [{"type": "input_text", "text": "When is the office open?"}]
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": content}
            )
            await conn.response.create()
            done = await rec.wait_event("response.done")
    assert updated.session.input_audio_format == "pcm16"
    assert updated.session.turn_detection.silence_duration_ms == 600
    assert updated.session.voice == "echo"
    names = {kind(e) for e in rec.events}
    assert {
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
    } <= names
    assert {"conversation.item.created", "response.audio_transcript.done"} <= names
    assert not {n for n in names if n.startswith("response.output_audio")}
    assert "conversation.item.added" not in names
    assert done.response.status == "completed"
    assert done.response.output[0].content[0].type == "audio"
    transcript = rec.of("response.audio_transcript.done")[0].transcript
    assert transcript == OPENING_HOURS
    words = set(normalize(await _stt(server, rec.audio(done.response.id))).split())
    assert len({"office", "open", "nine", "morning", "five", "evening", "weekdays"} & words) >= 4


async def test_without_an_agent_id_text_only(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    """No agent_id: an unsaved agent with no documents (the knowledge-base agent on this
    server, which has no LLM configured) answers; text-only output sends no audio."""
    async with client.realtime.connect(model="gpt-realtime") as conn:
        rec = Recorder(aiter(conn))
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await rec.wait_event("session.updated")
        content = [{"type": "input_text", "text": "What is the capital of France?"}]
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": content}
        )
        await conn.response.create()
        done = await rec.wait_event("response.done")
        # Per response, audio can come back.
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": content}
        )
        await conn.response.create(response={"output_modalities": ["audio"]})
        spoken = await rec.wait_event("response.done", lambda e: e.response.id != done.response.id)
    assert done.response.status == "completed"
    assert done.response.output_modalities == ["text"]
    assert rec.of("response.output_text.done")[0].text == "Sorry, I don't know that."
    assert not [
        e for e in rec.events if kind(e) in AUDIO_DELTAS and e.response_id == done.response.id
    ]
    assert spoken.response.output[0].content[0].transcript == "Sorry, I don't know that."
    words = set(normalize(await _stt(server, rec.audio(spoken.response.id))).split())
    assert len({"sorry", "i", "don't", "know", "that"} & words) >= 3, words


async def test_voice_and_unknown_agent(server: RunningServer, client: openai.AsyncOpenAI) -> None:
    async with client.realtime.connect(model="gpt-realtime") as conn:
        rec = Recorder(aiter(conn))
        session = _ga_session()
        session["audio"]["output"]["voice"] = "no-such-voice"
        await conn.session.update(session=session, event_id="evt_voice")
        error = await rec.wait_event("error")
        assert error.error.event_id == "evt_voice"
        assert error.error.param == "session.audio.output.voice"
        assert error.error.type == "invalid_request_error"
        # A refused update changes nothing; a good one applies.
        session["audio"]["output"]["voice"] = "onyx"
        await conn.session.update(session=session)
        updated = await rec.wait_event("session.updated")
        assert updated.session.audio.output.voice == "onyx"
    missing = "00000000-0000-0000-0000-000000000000"
    async with client.realtime.connect(
        model="gpt-realtime", extra_query={"agent_id": missing}
    ) as conn:
        rec = Recorder(aiter(conn))
        error = await rec.wait_event("error")
        assert error.error.param == "agent_id" and missing in error.error.message
        await rec.wait_closed()
    # Then a close that says why (policy), and no session ever started.
    assert isinstance(rec.error, ConnectionClosed) and rec.error.rcvd is not None
    assert rec.error.rcvd.code == 1008
    assert rec.of("session.created") == []


# ---- bad input, on a plain socket (the SDK would not send most of it) ----------------------

_TD = '{"type":"session.update","session":{"type":"realtime","audio":{"input":'
BAD_EVENTS = [
    ("{nope", "invalid_json", None, None),
    (_TD + '{"format":{"type":"audio/pcm"', "invalid_json", None, None),  # truncated
    ("[1, 2]", "protocol_error", None, None),
    ('{"type":"dance","event_id":"evt_1"}', "unknown_event", "type", "evt_1"),
    ('{"event_id":"evt_2"}', "missing_required_parameter", "type", "evt_2"),
    ('{"type":7}', "invalid_type", "type", None),
    ('{"type":"input_audio_buffer.clear","event_id":5}', "invalid_type", "event_id", None),
    ('{"type":"conversation.item.delete","item_id":"x"}', "unsupported_event", "type", None),
    ('{"type":"input_audio_buffer.append","audio":"@@@@"}', "invalid_audio", "audio", None),
    ('{"type":"input_audio_buffer.append","audio":12}', "invalid_type", "audio", None),
    ('{"type":"input_audio_buffer.append","audio":"AAAA"}', "invalid_audio", "audio", None),
    (
        _TD + '{"turn_detection":"yes"}}}}',
        "invalid_type",
        "session.audio.input.turn_detection",
        None,
    ),
    (
        _TD + '{"format":{"type":"audio/pcm","rate":16000}}}}}',
        "invalid_value",
        "session.audio.input.format.rate",
        None,
    ),
    (
        _TD + '{"format":{"type":"audio/opus"}}}}}',
        "invalid_value",
        "session.audio.input.format.type",
        None,
    ),
    (
        '{"type":"session.update","session":{"type":"realtime","tools":[{"name":"f"}]}}',
        "unsupported_parameter",
        "session.tools",
        None,
    ),
    ('{"type":"session.update","session":{"bogus":1}}', "unknown_parameter", "session.bogus", None),
    (
        '{"type":"session.update","session":{"input_audio_format":"pcm16","audio":{}}}',
        "invalid_value",
        "session",
        None,
    ),
    ('{"type":"session.update","session":"realtime"}', "invalid_type", "session", None),
    (
        '{"type":"conversation.item.create","event_id":"evt_3","item":{"type":"message",'
        '"role":"user","content":[{"type":"input_audio","audio":"AAAA"}]}}',
        "unsupported_parameter",
        "item.content[0].type",
        "evt_3",
    ),
    ('{"type":"response.cancel"}', "response_cancel_not_active", None, None),
]


async def _raw(server: RunningServer, s: aiohttp.ClientSession, **params: str) -> Any:
    return await s.ws_connect(
        f"{server.ws_url}/openai/v1/realtime",
        params={"model": "gpt-realtime", **params},
        headers=server.headers(),
    )


@pytest.mark.parametrize(("frame", "code", "param", "event_id"), BAD_EVENTS)
async def test_bad_events_get_an_error_event_and_the_socket_stays(
    server: RunningServer, frame: str, code: str, param: str | None, event_id: str | None
) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await _raw(server, s)
        rec = Recorder(raw_events(ws))
        await rec.wait_event("session.created")
        await ws.send_str(frame)
        error = await rec.wait_event("error")
        assert error["error"]["code"] == code, error
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["param"] == param
        assert error["error"]["event_id"] == event_id
        assert error["error"]["message"]
        # The socket still works.
        await ws.send_str('{"type":"input_audio_buffer.clear","event_id":"evt_ok"}')
        await rec.wait_event("input_audio_buffer.cleared")
        assert not ws.closed
        await ws.close()


async def test_binary_and_oversized_frames_are_refused_without_closing(
    server: RunningServer,
) -> None:
    limit = server.settings.max_ws_message_bytes
    big = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (limit + 4)})
    async with aiohttp.ClientSession() as s:
        ws = await _raw(server, s)
        assert ws.protocol is None  # nothing offered, nothing chosen
        rec = Recorder(raw_events(ws))
        await rec.wait_event("session.created")
        await ws.send_bytes(b"\x00\x01" * 100)
        await rec.wait_event("error")
        await ws.send_str(big)
        await rec.wait_for(lambda: len(rec.of("error")) == 2)
        await ws.send_str('{"type":"input_audio_buffer.clear"}')
        await rec.wait_event("input_audio_buffer.cleared")
        await ws.close()
    codes = [e["error"]["code"] for e in rec.of("error")]
    assert codes == ["invalid_message", "payload_too_large"]
    assert str(limit) in rec.of("error")[1]["error"]["message"]


async def test_a_hopeless_client_is_closed_and_a_keyless_one_refused(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await _raw(server, s)
        rec = Recorder(raw_events(ws))
        await rec.wait_event("session.created")
        for _ in range(60):
            if ws.closed:
                break
            await ws.send_str('{"type":"dance"}')
        await rec.wait_closed()
        assert ws.close_code == 1002
        # One error per bad event, then the one that closes.
        codes = [e["error"]["code"] for e in rec.of("error")]
        assert codes == ["unknown_event"] * 50 + ["protocol_error"]
        # No key: refused before the upgrade, with a JSON error.
        async with s.get(f"{server.url}/openai/v1/realtime", params={"model": "x"}) as r:
            assert r.status == 401
            assert "error" in await r.json()
        # Browsers offer the "realtime" subprotocol; it is chosen.
        ws = await s.ws_connect(
            f"{server.ws_url}/openai/v1/realtime",
            protocols=("realtime",),
            headers=server.headers(),
        )
        assert ws.protocol == "realtime"
        await ws.close()


async def test_events_validate_against_the_sdk_models(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    """Every server event parses strictly as the SDK's own event types, not just leniently."""
    from openai.types.realtime import RealtimeServerEvent
    from pydantic import TypeAdapter

    strict = TypeAdapter(RealtimeServerEvent)
    async with aiohttp.ClientSession() as s:
        ws = await _raw(server, s)
        rec = Recorder(raw_events(ws))
        await ws.send_json({"type": "session.update", "session": _ga_session()})
        content = [{"type": "input_text", "text": "Is parking free?"}]
        await ws.send_json(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": content},
            }
        )
        await ws.send_json({"type": "response.create"})
        await rec.wait_event("response.done")
        await ws.send_json({"type": "input_audio_buffer.commit"})  # an error event, too
        await rec.wait_event("error")
        await ws.close()
    for event in rec.events:
        assert strict.validate_python(event).type == event["type"]
    names = {e["type"] for e in rec.events}
    assert {"session.created", "conversation.created", "response.output_audio.delta"} <= names


async def test_commit_during_server_vad_ends_the_utterance(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    question = await _tts(server, "Where can I park my car?")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        rec = Recorder(aiter(conn))
        vad = {"type": "server_vad", "create_response": False}
        await conn.session.update(session=_ga_session(turn_detection=vad))
        await rec.wait_event("session.updated")
        # Speech with no pause after it: the VAD has not ended the turn, the client does.
        await _speak(conn, SILENCE_24K[:12000] + question)
        started = await rec.wait_event("input_audio_buffer.speech_started")
        await conn.input_audio_buffer.commit()
        committed = await rec.wait_event("input_audio_buffer.committed")
        heard = await rec.wait_event("conversation.item.input_audio_transcription.completed")
    assert started.item_id == committed.item_id == heard.item_id
    assert _stems(heard.transcript, ("where", "park", "car")) >= 2, heard.transcript
    assert rec.of("response.created") == []


async def test_an_agent_with_a_greeting_speaks_first(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    agent = await _agent(server, first_message="Hello, how can I help you?")
    async with client.realtime.connect(
        model="gpt-realtime", extra_query={"agent_id": agent["id"]}
    ) as conn:
        rec = Recorder(aiter(conn))
        await conn.session.update(session=_ga_session())
        done = await rec.wait_event("response.done")
        # The voice is fixed once the session has spoken, as with OpenAI ("alloy" named the
        # Piper voice; flite's rms is another one).
        session = _ga_session()
        session["audio"]["output"]["voice"] = "rms"
        await conn.session.update(session=session)
        refused = await rec.wait_event("error")
    assert done.response.status == "completed"
    assert done.response.output[0].content[0].transcript == "Hello, how can I help you?"
    words = set(normalize(await _stt(server, rec.audio(done.response.id))).split())
    assert len({"hello", "how", "can", "help", "you"} & words) >= 3, words
    assert rec.of("conversation.item.input_audio_transcription.completed") == []
    assert refused.error.code == "cannot_update_voice"
