"""The session core (VAD → STT → agent → TTS) driven directly, with scripted engines.

No sockets: the test is the transport. It pushes user audio in 20 ms frames, pulls agent frames
from the speaker as a transport would at playback pace, and reads the session's events. The
engines are the scripted fakes of ``tests/fakes/scripted_engines.py``: speech is wherever the
audio is loud, each utterance is transcribed as the script says, and every clause the agent
speaks is a tone of known length.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from fakes.scripted_engines import (
    RATE,
    EnergyVAD,
    Reply,
    ScriptedAgent,
    ScriptedSTT,
    ToneTTS,
    silence,
    speech,
)
from voicestream.engines.agents.base import AgentConfig, ChatMessage
from voicestream.engines.catalog import EngineRegistry
from voicestream.engines.executor import InferenceExecutor
from voicestream.errors import ClientTooSlow
from voicestream.pipeline.session import (
    REPROMPT,
    ConversationHooks,
    ConversationSession,
    SessionDeps,
)

FRAME_MS = 20
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2
CLAUSE_MS = 300  # every clause the agent speaks lasts this long
WITHIN = 10.0  # seconds any awaited state may take before the test fails


@dataclass
class Records:
    """What the session asked the composition root to store."""

    turns: list[tuple[str, str, bool]] = field(default_factory=list)
    remembered: list[tuple[str, str | None]] = field(default_factory=list)
    states: list[list[ChatMessage]] = field(default_factory=list)
    # Every write waits for this first: a store that is slow for as long as a test says.
    store_open: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.store_open.set()

    def hooks(self) -> ConversationHooks:
        async def add_turn(role: str, text: str, interrupted: bool) -> None:
            await self.store_open.wait()
            self.turns.append((role, text, interrupted))

        async def remember(text: str, end_user: str | None) -> None:
            await self.store_open.wait()
            self.remembered.append((text, end_user))

        async def save_state(history: list[ChatMessage], end_user: str | None) -> None:
            self.states.append(history)

        return ConversationHooks(add_turn, remember, save_state)


class Call:
    """One conversation and the transport side of it."""

    def __init__(
        self, session: ConversationSession, stt: ScriptedSTT, tts: ToneTTS, agent: ScriptedAgent
    ) -> None:
        self.session = session
        self.stt = stt
        self.tts = tts
        self.agent = agent
        self.events: list[dict[str, Any]] = []
        self.stages: list[tuple[str, float]] = []  # what the session reported to its metrics

    def _collect(self) -> None:
        while (event := self.session.next_event_nowait()) is not None:
            self.events.append(event)

    def seen(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        self._collect()
        return [
            e
            for e in self.events
            if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())
        ]

    def kinds(self) -> list[str]:
        """Every event so far by kind; turns as ``turn:<speaker>:<state>``."""
        self._collect()
        return [
            f"turn:{e['speaker']}:{e['state']}" if e["type"] == "turn" else e["type"]
            for e in self.events
        ]

    async def wait_for(self, kind: str, *, nth: int = 1, **fields: Any) -> dict[str, Any]:
        """The ``nth`` event of ``kind`` with ``fields``, seen before or arriving within WITHIN."""
        deadline = time.monotonic() + WITHIN
        while len(found := self.seen(kind, **fields)) < nth:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind} {fields} event #{nth}; got {self.events}")
            try:
                event = await asyncio.wait_for(self.session.next_event(), remaining)
            except TimeoutError:
                continue
            self.events.append(event)
        return found[nth - 1]

    async def say(self, audio: bytes) -> None:
        """User audio, pushed in 20 ms frames as a transport receives it."""
        for i in range(0, len(audio), FRAME_BYTES):
            await self.session.push_audio(audio[i : i + FRAME_BYTES])

    async def play(self, frames: int) -> list[bytes]:
        """Pull ``frames`` agent frames, waiting for each as a playback clock would."""
        return [await asyncio.wait_for(self.session.speaker.get(), WITHIN) for _ in range(frames)]


@pytest.fixture
def records() -> Records:
    return Records()


@pytest.fixture
async def make_call(records: Records) -> AsyncIterator[Any]:
    stt_executor = InferenceExecutor("test-stt", 1)
    tts_executor = InferenceExecutor("test-tts", 1)
    sessions: list[ConversationSession] = []

    def make(
        *,
        first_message: str | None = None,
        silence_timeout_s: float = 0.0,
        end_user_id: str | None = None,
        history_max_messages: int = 20,
        history_max_chars: int = 8000,
        **bounds: int,
    ) -> Call:
        stt, tts, agent = ScriptedSTT(), ToneTTS(CLAUSE_MS), ScriptedAgent()
        stages: list[tuple[str, float]] = []
        deps = SessionDeps(
            registry=EngineRegistry([tts], stt, EnergyVAD()),
            tts_executors={tts.name: tts_executor},
            stt_executor=stt_executor,
            agent_engine=agent,
            silence_timeout_s=silence_timeout_s,
            history_max_messages=history_max_messages,
            history_max_chars=history_max_chars,
            observe_stage=lambda stage, seconds: stages.append((stage, seconds)),
        )
        config = AgentConfig(
            id="agent-1",
            workspace_id="ws-1",
            name="Test",
            voice="tone",
            first_message=first_message,
        )
        session = ConversationSession(
            deps,
            config,
            records.hooks(),
            conversation_id="conv-1",
            end_user_id=end_user_id,
            **bounds,  # max_events, max_pending_writes
        )
        sessions.append(session)
        call = Call(session, stt, tts, agent)
        call.stages = stages
        return call

    yield make
    for session in sessions:
        await session.close()
    stt_executor.shutdown()
    tts_executor.shutdown()


async def test_a_user_turn_gets_an_agent_turn_with_its_text_and_audio(
    make_call: Any, records: Records
) -> None:
    call: Call = make_call(end_user_id="user-7")
    call.stt.say("what time is it")
    call.agent.answer(Reply(("It is ", "noon. "), pause_s=0.01))

    await call.say(silence(300) + speech(800) + silence(600))

    assert call.seen("turn", speaker="user", state="start")
    assert call.seen("user_transcript", text="what", final=False)  # the partial
    await call.wait_for("user_transcript", text="what time is it", final=True)
    await call.wait_for("turn", speaker="agent", state="start")
    frames = await call.play(CLAUSE_MS // FRAME_MS)
    await call.wait_for("agent_response", text="It is noon.")
    await call.wait_for("turn", speaker="agent", state="end")

    assert frames[0] == call.tts.frame and all(len(f) == FRAME_BYTES for f in frames)
    assert call.session.speaker.get_nowait() is None  # exactly the clause's audio, no more
    assert call.tts.spoken == ["It is noon. "]
    [request] = call.agent.requests
    assert (request.user_text, request.end_user_id, request.dtmf) == (
        "what time is it",
        "user-7",
        None,
    )
    await call.session.close()
    assert records.turns == [("user", "what time is it", False), ("agent", "It is noon.", False)]
    assert records.remembered == [("what time is it", "user-7")]
    assert [m.content for m in records.states[-1]] == ["what time is it", "It is noon."]
    # Where the answer's time went, once each: the final, the agent, then the voice, which
    # waited for the clause to end ("noon. " came 10 ms after "It is ").
    assert [stage for stage, _ in call.stages] == ["final_wait", "agent", "speech"]
    seconds = dict(call.stages)
    assert all(0 <= v < WITHIN for v in seconds.values()), seconds
    assert seconds["speech"] >= 0.01, seconds


async def test_barge_in_stops_agent_audio_within_a_frame_and_stores_the_turn_interrupted(
    make_call: Any, records: Records
) -> None:
    call: Call = make_call()
    call.stt.say("tell me a story", "stop")
    long_answer = "Once upon a time there was a very long story. "
    call.agent.answer(long_answer, "Stopped.")
    call.tts.ms_per_clause = 2000  # 100 frames: plenty left to interrupt

    await call.say(speech(600) + silence(600))
    await call.wait_for("turn", speaker="agent", state="start")
    played = len(await call.play(5))

    # The user talks over the agent; the transport keeps pulling a frame per frame received.
    user_frames = 0
    for i in range(0, len(speech(600)), FRAME_BYTES):
        await call.session.push_audio(speech(600)[i : i + FRAME_BYTES])
        user_frames += 1
        if call.seen("interruption"):
            break
        assert call.session.speaker.get_nowait() is not None
        played += 1
    else:
        pytest.fail(f"no barge-in; events: {call.events}")

    # The VAD needs its minimum speech (100 ms, in 32 ms windows); then not one more frame.
    assert user_frames * FRAME_MS <= 100 + 2 * 32
    assert call.session.speaker.get_nowait() is None
    assert call.seen("interruption")[0]["dropped_ms"] > 0
    await call.wait_for("turn", speaker="agent", state="end")

    await call.say(silence(600))
    await call.wait_for("user_transcript", text="stop", final=True)
    await call.wait_for("turn", speaker="agent", state="start")
    await call.play(100)
    await call.wait_for("agent_response", text="Stopped.")
    await call.session.close()
    # The answer is stored as far as it was heard: whole words, about as many of its characters
    # as the share of its 2 s the user heard (the clause has no timing: an even rate).
    heard = records.turns[1][1]
    assert long_answer.startswith(heard) and long_answer[len(heard)] == " ", heard
    share = played * FRAME_MS / call.tts.ms_per_clause
    assert share * len(long_answer) - 1 <= len(heard) <= share * len(long_answer) + len(" upon")
    assert records.turns == [
        ("user", "tell me a story", False),
        ("agent", heard, True),
        ("user", "stop", False),
        ("agent", "Stopped.", False),
    ]
    assert call.session.stats.interruptions == 1
    # The client was told the full answer, then what was heard of it.
    correction = call.seen("agent_response_correction")
    assert correction == [
        {"type": "agent_response_correction", "original": long_answer.strip(), "corrected": heard}
    ]
    assert [m.content for m in records.states[-1]][:2] == ["tell me a story", heard]


async def test_the_agent_waits_for_the_end_of_speech(make_call: Any) -> None:
    call: Call = make_call()
    call.stt.say("turn on the kitchen lights")

    # A pause shorter than the VAD's minimum silence (400 ms) is part of the same turn.
    await call.say(silence(200) + speech(700) + silence(250) + speech(700) + silence(100))
    assert call.agent.requests == []
    assert not call.seen("user_transcript", final=True)
    assert not call.seen("turn", speaker="user", state="end")
    assert not call.session.agent_active

    await call.say(silence(500))
    await call.wait_for("user_transcript", text="turn on the kitchen lights", final=True)
    await call.wait_for("agent_response", text="OK.")
    assert [r.user_text for r in call.agent.requests] == ["turn on the kitchen lights"]
    assert call.stt.utterances == 1


async def test_silence_gets_one_reprompt_then_a_hang_up(make_call: Any) -> None:
    call: Call = make_call(silence_timeout_s=0.3)

    await call.wait_for("agent_response", text=REPROMPT)
    await call.play(CLAUSE_MS // FRAME_MS)
    await call.wait_for("turn", speaker="agent", state="end")
    assert not call.session.ended.is_set()

    event = await call.wait_for("session_end")
    assert event["reason"] == "silence_timeout"
    assert call.session.ended.is_set()
    assert call.tts.spoken == [REPROMPT]
    assert call.agent.requests == []  # the reprompt is the server's words, not the agent's


async def test_speech_after_a_reprompt_keeps_the_call_open(make_call: Any) -> None:
    call: Call = make_call(silence_timeout_s=0.3)
    call.stt.say("yes I am here")

    await call.wait_for("agent_response", text=REPROMPT)
    await call.play(CLAUSE_MS // FRAME_MS)
    await call.say(speech(400) + silence(500))
    await call.wait_for("agent_response", text="OK.")
    await call.play(CLAUSE_MS // FRAME_MS)
    await call.wait_for("agent_response", text=REPROMPT)  # a fresh silence, a fresh reprompt
    assert not call.seen("session_end")


async def test_dtmf_is_a_user_turn_that_carries_the_digits(
    make_call: Any, records: Records
) -> None:
    call: Call = make_call()
    call.agent.answer("You chose billing.")

    await call.session.push_dtmf("12#")
    await call.wait_for("user_transcript", text="I pressed 1 2 #", final=True)
    await call.wait_for("agent_response", text="You chose billing.")
    [request] = call.agent.requests
    assert (request.user_text, request.dtmf) == ("I pressed 1 2 #", "12#")


async def test_typed_text_while_the_agent_talks_interrupts_it(
    make_call: Any, records: Records
) -> None:
    call: Call = make_call(first_message="Hello, how can I help you today?")
    call.tts.ms_per_clause = 2000

    await call.session.greet()
    await call.wait_for("turn", speaker="agent", state="start")
    await call.play(3)
    await call.session.push_text("What are your opening hours?")

    assert call.seen("interruption")
    assert call.session.speaker.get_nowait() is None
    await call.wait_for("user_transcript", text="What are your opening hours?", final=True)
    await call.wait_for("agent_response", text="OK.")
    # The greeting is the agent's first message, spoken without asking the agent; the agent is
    # asked with the greeting it cut short already in the history: someone who types reads the
    # agent's words, so the whole greeting, whose text went out, was read.
    greeting = ChatMessage("assistant", "Hello, how can I help you today?")
    [request] = call.agent.requests
    assert (request.user_text, request.history) == ("What are your opening hours?", (greeting,))
    await call.play(2000 // FRAME_MS)
    await call.wait_for("turn", speaker="agent", state="end", nth=2)
    await call.session.close()
    # In the order they happened: the interrupted turn, then the text that interrupted it.
    assert records.turns == [
        ("agent", "Hello, how can I help you today?", True),
        ("user", "What are your opening hours?", False),
        ("agent", "OK.", False),
    ]
    assert not call.seen("agent_response_correction")
    assert [(m.role, m.content) for m in call.session.history] == [
        ("assistant", "Hello, how can I help you today?"),
        ("user", "What are your opening hours?"),
        ("assistant", "OK."),
    ]
    assert records.states[-1] == call.session.history


async def test_dtmf_while_the_agent_talks_is_recorded_after_the_turn_it_interrupts(
    make_call: Any, records: Records
) -> None:
    call: Call = make_call()
    call.stt.say("I have a question")
    call.agent.answer("Please press 1 for billing or 2 for support. ", "You chose support.")
    call.tts.ms_per_clause = 2000

    await call.say(speech(400) + silence(500))
    await call.wait_for("turn", speaker="agent", state="start")
    await call.play(3)
    await call.session.push_dtmf("2")

    # The client hears the interruption, what was heard of the turn it cut short (60 ms of a
    # 2 s clause: its first word), the turn's end, then the user's turn.
    await call.wait_for("agent_response", text="You chose support.")
    after_start = call.kinds()[call.kinds().index("turn:agent:start") + 1 :]
    assert after_start[:4] == [
        "interruption",
        "agent_response_correction",
        "turn:agent:end",
        "user_transcript",
    ]
    assert call.seen("agent_response_correction")[0]["corrected"] == "Please"
    second = call.agent.requests[1]
    assert [m.content for m in second.history] == ["I have a question", "Please"]
    await call.play(2000 // FRAME_MS)
    await call.wait_for("turn", speaker="agent", state="end", nth=2)
    await call.session.close()
    assert [(role, interrupted) for role, _, interrupted in records.turns] == [
        ("user", False),
        ("agent", True),
        ("user", False),
        ("agent", False),
    ]
    assert records.turns[2][1] == "I pressed 2"


async def test_an_agent_that_fails_while_interrupted_is_logged_not_swallowed(
    make_call: Any, records: Records, caplog: pytest.LogCaptureFixture
) -> None:
    call: Call = make_call()
    call.stt.say("hi", "wait")
    call.agent.answer(Reply(("Let me think about that. ",), hang=True, fail_when_cancelled=True))

    await call.say(speech(400) + silence(500))
    await call.wait_for("turn", speaker="agent", state="start")
    with caplog.at_level(logging.ERROR, logger="voicestream.pipeline.session"):
        await call.say(speech(200))
        assert call.seen("interruption")
        await call.wait_for("turn", speaker="agent", state="end")
    assert call.agent.cancelled == 1
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failures and "agent-text failed" in failures[0].getMessage()
    assert isinstance(failures[0].exc_info and failures[0].exc_info[1], RuntimeError)


async def test_an_agent_that_fails_mid_answer_is_reported_and_the_call_goes_on(
    make_call: Any, records: Records, caplog: pytest.LogCaptureFixture
) -> None:
    call: Call = make_call()
    call.stt.say("hi", "are you there")
    call.agent.answer(Reply(("Let me check. ",), fail=True), "I am here.")

    with caplog.at_level(logging.WARNING, logger="voicestream.pipeline.session"):
        await call.say(speech(400) + silence(500))
        error = await call.wait_for("error")
    # The client is told, in the words of the error tree, without the agent's internals.
    assert error["code"] == "engine_error"
    assert "mid-answer" not in error["message"]
    # Logged once, with the traceback, for the operator.
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert isinstance(logged[0].exc_info and logged[0].exc_info[1], RuntimeError)
    # What the agent did say before failing was heard: it ends the turn, cut short.
    await call.wait_for("turn", speaker="agent", state="end")
    await call.play(CLAUSE_MS // FRAME_MS)

    # The session is still usable: the next user turn gets an answer.
    await call.say(speech(400) + silence(500))
    await call.wait_for("agent_response", text="I am here.")
    await call.play(CLAUSE_MS // FRAME_MS)
    await call.wait_for("turn", speaker="agent", state="end", nth=2)
    await call.session.close()
    assert records.turns == [
        ("user", "hi", False),
        ("agent", "Let me check.", True),
        ("user", "are you there", False),
        ("agent", "I am here.", False),
    ]


async def test_a_client_that_lets_events_pile_up_is_ended_as_too_slow(
    make_call: Any, caplog: pytest.LogCaptureFixture
) -> None:
    call: Call = make_call(max_events=8)

    # The transport stops taking events; every typed turn adds a few.
    with caplog.at_level(logging.WARNING, logger="voicestream.pipeline.session"):
        for n in range(6):
            await call.session.push_text(f"message {n}")

    # Not silent drops: the transport's next read says why the conversation is over, and
    # goes on saying it (whichever way the transport reads).
    with pytest.raises(ClientTooSlow) as raised:
        await asyncio.wait_for(call.session.next_event(), WITHIN)
    assert raised.value.ws_close_code == 1013
    with pytest.raises(ClientTooSlow):
        call.session.next_event_nowait()
    assert not [r for r in caplog.records if "dropping" in r.getMessage()]


async def test_a_store_that_falls_behind_bounds_the_writes_and_tells_the_client(
    make_call: Any, records: Records
) -> None:
    call: Call = make_call(max_pending_writes=4)
    records.store_open.clear()  # the store takes nothing for now
    try:
        # Each typed turn writes the user's turn and a memory: 12 writes for a queue of 4.
        for n in range(6):
            await call.session.push_text(f"message {n}")
        error = await call.wait_for("error")
        assert error["code"] == "service_unavailable"
        assert call.session.stats.dropped_writes >= 12 - 4 - 1  # one is in the writer's hands
    finally:
        records.store_open.set()
    await call.session.close()
    assert len(call.seen("error")) == 1  # told once, not once a write
    kept = len(records.turns) + len(records.remembered)
    assert kept + call.session.stats.dropped_writes >= 12
    assert kept <= 4 + 1 + 4  # at most what was queued, in hand, and written after the release


async def _typed_turns(call: Call, count: int) -> None:
    """``count`` typed user turns, each answered in full before the next."""
    for i in range(1, count + 1):
        call.agent.answer(f"Answer {i}.")
        await call.session.push_text(f"Question {i}?")
        await call.play(1)  # the answer's one frame: a turn ends once it has been heard
        await call.wait_for("turn", nth=i, speaker="agent", state="end")


async def test_the_history_the_agent_sees_and_the_saved_state_keep_the_newest_messages(
    make_call: Any, records: Records
) -> None:
    call: Call = make_call(history_max_messages=4)
    call.tts.ms_per_clause = FRAME_MS  # short answers: this test is about what is kept

    await _typed_turns(call, 6)

    newest = ["Question 5?", "Answer 5.", "Question 6?", "Answer 6."]
    assert [m.content for m in call.session.history] == newest
    # Redis gets the bounded history on every turn, never the whole conversation.
    assert max(len(state) for state in records.states) == 4
    assert [m.content for m in records.states[-1]] == newest
    # The agent was handed the newest messages before the question it answers.
    assert [m.content for m in call.agent.requests[-1].history] == [
        "Question 4?",
        "Answer 4.",
        "Question 5?",
        "Answer 5.",
    ]
    # The stored transcript still has every turn.
    await call.session.close()
    assert len(records.turns) == 12


async def test_the_history_keeps_within_its_character_budget_but_always_the_newest_message(
    make_call: Any, records: Records
) -> None:
    call: Call = make_call(history_max_messages=100, history_max_chars=40)
    call.tts.ms_per_clause = FRAME_MS
    long_answer = "A very long answer that goes on and on. " * 4  # 160 characters

    await _typed_turns(call, 3)
    # 20 characters a question and its answer: the newest two pairs fit.
    assert [m.content for m in call.session.history] == [
        "Question 2?",
        "Answer 2.",
        "Question 3?",
        "Answer 3.",
    ]

    call.agent.answer(long_answer)
    await call.session.push_text("Tell me everything.")
    await call.play(4)  # a frame a sentence
    await call.wait_for("turn", nth=4, speaker="agent", state="end")
    # One message past the budget on its own: the newest is still kept, and only it.
    assert [m.content for m in records.states[-1]] == [long_answer.strip()]


async def test_close_finishes_its_work_when_the_responder_had_crashed(
    records: Records, caplog: pytest.LogCaptureFixture
) -> None:
    stt, tts, agent = ScriptedSTT(["hi"]), ToneTTS(CLAUSE_MS), ScriptedAgent(["Hello."])
    stt_executor = InferenceExecutor("test-stt", 1)
    deps = SessionDeps(
        registry=EngineRegistry([tts], stt, EnergyVAD()),
        tts_executors={},  # a composition root that forgot the voice's executor
        stt_executor=stt_executor,
        agent_engine=agent,
    )
    config = AgentConfig(id="agent-1", workspace_id="ws-1", name="Test", voice="tone")
    session = ConversationSession(deps, config, records.hooks(), conversation_id="conv-1")
    try:
        call = Call(session, stt, tts, agent)
        await call.say(speech(400) + silence(500))  # the stream now holds a decoder
        await call.wait_for("user_transcript", text="hi")
        with caplog.at_level(logging.ERROR, logger="voicestream.pipeline.session"):
            await asyncio.wait_for(session.close(), WITHIN)
        # The crash is seen, not swallowed, and the rest of the close still happened.
        failures = [r for r in caplog.records if "respond failed" in r.getMessage()]
        assert failures and isinstance(failures[0].exc_info and failures[0].exc_info[1], KeyError)
        assert stt.pool_stats().streams == 0
        assert records.turns == [("user", "hi", False)]
    finally:
        stt_executor.shutdown()


async def test_a_close_that_is_itself_cancelled_stays_cancelled_and_still_cleans_up(
    make_call: Any, records: Records
) -> None:
    call: Call = make_call()
    call.stt.say("hi")
    call.agent.answer(Reply(("Let me think about that. ",), hang=True))
    await call.say(speech(400) + silence(500))
    await call.wait_for("turn", speaker="agent", state="start")
    assert call.session.agent_active

    closing = asyncio.ensure_future(call.session.close())
    await asyncio.sleep(0)  # one step: the close waits for the cancelled responder
    closing.cancel()  # and the transport's task is cancelled meanwhile (server shutdown)
    await asyncio.wait([closing], timeout=WITHIN)

    assert closing.cancelled()  # before: the close swallowed its own cancellation
    assert call.stt.pool_stats().streams == 0
    assert ("agent", "Let me think about that.", True) in records.turns
