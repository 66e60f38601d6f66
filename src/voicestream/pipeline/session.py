"""A conversation: user audio → VAD/STT → agent → TTS → agent audio, with barge-in.

Three lanes run side by side:

* the listener (``push_audio``): VAD and STT on the STT executor; a final transcript starts an
  agent turn, and speech that starts while the agent talks is a barge-in;
* the responder (one task per agent turn): the agent's text deltas feed a TTS stream, whose
  clauses go to the speaker as soon as each is synthesized — the reply starts speaking when its
  first clause exists;
* the speaker (``speaker.Speaker``): 20 ms frames the transport pulls at playback pace.

Barge-in is control, not data: it cancels the responder, empties the speaker in one call and
emits an ``interruption`` event; the frames already handed out (at most a frame or two, since
transports pull at playback pace) are all the user still hears. The interrupted turn is recorded
there and then, so that whatever interrupted it (typed text, a key press) comes after it in the
history and the stored conversation.

A turn that fails (the agent or its voice raises) is logged, told to the client as an ``error``
event and ended with what was said; the session goes on to the next user turn.

The history (``self.history``: what the agent is handed and what ``save_state`` keeps for a
reconnect) is bounded too: the newest ``history_max_messages`` messages within
``history_max_chars`` characters. Every turn is still written in full through ``add_turn``;
only the working copy forgets.

Both queues are bounded. A client that lets ``max_events`` events pile up is too slow to hold a
conversation: ``next_event`` then raises ``ClientTooSlow``, and the transport closes the socket
with the protocol's error event and 1013 (nothing is skipped silently, nothing buffered without
end). A store that lets ``max_pending_writes`` writes pile up is failing (its outbox absorbs
outages): further writes are dropped, and the client is told once with an ``error`` event.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..engines.agents.base import AgentConfig, AgentEngine, AgentRequest, ChatMessage
from ..engines.catalog import EngineRegistry
from ..engines.executor import InferenceExecutor
from ..engines.stt_stream import STTStream
from ..engines.tts_stream import TextScreen, TTSStream
from ..errors import ClientTooSlow, EngineError, ServiceUnavailable, VoiceStreamError
from ..media.resample import Resampler
from . import events
from .heard_text import SpokenClause, heard_prefix
from .speaker import Speaker

__all__ = ["ConversationHooks", "ConversationSession", "SessionDeps", "SessionStats"]

log = logging.getLogger(__name__)

Event = dict[str, Any]
SAMPLE_RATE = 16000  # the session's internal and default output rate
REPROMPT = "Are you still there?"
_IDLE_POLL_S = 0.25


@dataclass(slots=True)
class ConversationHooks:
    """Persistence and memory, supplied by the composition root (store lives above engines)."""

    add_turn: Callable[[str, str, bool], Awaitable[None]]  # role, text, interrupted
    # A final user utterance and who said it (None: anonymous), for long-term memory.
    remember: Callable[[str, str | None], Awaitable[None]]
    # Live state for reconnects: the history and the end user.
    save_state: Callable[[list[ChatMessage], str | None], Awaitable[None]]


@dataclass(slots=True)
class SessionDeps:
    registry: EngineRegistry
    tts_executors: dict[str, InferenceExecutor]
    stt_executor: InferenceExecutor
    agent_engine: AgentEngine
    vad_threshold: float = 0.5
    vad_min_silence_ms: int = 400
    vad_min_speech_ms: int = 100
    silence_timeout_s: float = 0.0  # 0: never prompt or hang up on silence
    # What the agent is handed and a reconnect restores; the stored transcript keeps everything.
    history_max_messages: int = 20
    history_max_chars: int = 8000
    # Told each answered turn's stages (final_wait, agent, speech) in seconds: the metrics.
    observe_stage: Callable[[str, float], None] | None = None
    # Content moderation of the agent's replies: what may not be said comes back as a
    # refusal to say instead (each clause before it is spoken, and the whole reply before it
    # is shown or stored). None: replies are spoken as they come.
    screen_reply: TextScreen | None = None


@dataclass(slots=True)
class _Turn:
    """One agent turn's text so far; recorded once, whichever way the turn ends."""

    reply: list[str] = field(default_factory=list)
    recorded: bool = False
    announced: bool = False  # its whole text went out as an ``agent_response`` event
    clauses: list[SpokenClause] = field(default_factory=list)  # queued for playback
    first_frame: int | None = None  # the speaker's ``frames_queued`` at its first audio
    first_text_at: float | None = None  # when the agent's first text arrived (monotonic)


@dataclass(slots=True)
class SessionStats:
    """Timestamps the benchmarks and metrics read (``time.monotonic``)."""

    user_speech_end: float | None = None  # last final transcript's audio end, arrival time
    agent_audio_start: list[float] = field(default_factory=list)
    voice_to_voice: list[float] = field(default_factory=list)
    interruptions: int = 0
    dropped_writes: int = 0  # conversation writes lost to a store that fell too far behind


class ConversationSession:
    def __init__(
        self,
        deps: SessionDeps,
        agent: AgentConfig,
        hooks: ConversationHooks,
        *,
        session_id: str | None = None,
        conversation_id: str,
        end_user_id: str | None = None,
        history: list[ChatMessage] | None = None,
        max_events: int = 2000,
        max_pending_writes: int = 256,
    ) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.conversation_id = conversation_id
        self.agent = agent
        self.end_user_id = end_user_id
        self.history: list[ChatMessage] = _newest(
            list(history or []), deps.history_max_messages, deps.history_max_chars
        )
        self.speaker = Speaker(SAMPLE_RATE)
        # The client reads the agent's text instead of playing its audio (ElevenLabs' text-only
        # conversations): an answer whose text went out was read whole, even if interrupted.
        self.reads_text = False
        self.stats = SessionStats()
        self._deps = deps
        self._hooks = hooks
        self._engine, self._voice = deps.registry.voice(agent.voice)
        self._stt = STTStream(
            deps.registry.stt,
            deps.registry.vad,
            deps.stt_executor,
            vad_threshold=deps.vad_threshold,
            min_silence_ms=deps.vad_min_silence_ms,
            min_speech_ms=deps.vad_min_speech_ms,
            # Turns are text: timing their words would only delay the answer.
            word_times=False,
        )
        self._events: asyncio.Queue[Event] = asyncio.Queue(max_events)
        self._too_slow: ClientTooSlow | None = None  # set once the client fell too far behind
        self._responder: asyncio.Task[None] | None = None
        self._turn: _Turn | None = None  # the responder's turn
        # Writes go through one queue so they land in conversation order, off the hot path.
        self._writes: asyncio.Queue[Callable[[], Awaitable[None]] | None] = asyncio.Queue(
            max_pending_writes
        )
        self._store_behind = False  # writes are being dropped; the client has been told
        self._writer = asyncio.create_task(self._write_loop(), name="session-writes")
        self._user_speaking = False
        self._closed = False
        self.ended = asyncio.Event()  # the session hung up by itself (silence timeout)
        self._silence_timeout_s = deps.silence_timeout_s
        self._last_activity = time.monotonic()
        self._reprompted = False
        self._idle = asyncio.create_task(self._idle_watch(), name="session-idle")

    # ---- inputs ---------------------------------------------------------------------------

    async def greet(self) -> None:
        if self.agent.first_message:
            self._start_turn(None, self.agent.first_message)

    async def respond_unprompted(self) -> None:
        """An agent turn that no user input asked for (a client's "say something first"): the
        greeting while nothing has been said yet, else what the agent says from its
        instructions and the history alone."""
        if self.agent.first_message and not self.history:
            self._start_turn(None, self.agent.first_message)
            return
        request = AgentRequest(
            agent=self.agent,
            user_text="",
            history=tuple(self.history),
            end_user_id=self.end_user_id,
        )
        self._start_turn(request, None)

    async def push_audio(self, pcm: bytes) -> None:
        """User audio: mono s16le at 16 kHz, any length (a 20 ms frame is typical)."""
        for ev in await self._stt.feed(pcm):
            match ev.kind:
                case "speech_start":
                    self._user_heard()
                    self._user_speaking = True
                    self._emit(events.turn("user", "start"))
                    if self.agent_active:
                        self.barge_in()
                case "partial":
                    self._emit(events.user_transcript(ev.text, final=False))
                case "final":
                    self._user_speaking = False
                    self._emit(events.turn("user", "end"))
                    if ev.text.strip():
                        self._observe("final_wait", ev.decode_seconds)
                        await self._user_said(ev.text)

    async def push_text(self, text: str) -> None:
        """A typed message (the widget's text fallback): a whole user turn at once."""
        self._user_heard()
        if self.agent_active:
            self.barge_in(reading=True)
        await self._user_said(text)

    async def push_dtmf(self, digits: str) -> None:
        self._user_heard()
        if self.agent_active:
            self.barge_in()
        await self._user_said(f"I pressed {' '.join(digits)}", dtmf=digits)

    def set_input_rate(self, sample_rate: int) -> None:
        """The client's audio rate; a phone line's 8 kHz must not teach the recognizer pool."""
        self._stt.narrowband = sample_rate <= 8000

    def set_voice(self, voice_id: str) -> None:
        """Speak later turns in another voice (a client's session update). Raises UnknownVoice."""
        self._engine, self._voice = self._deps.registry.voice(voice_id)

    def configure(
        self,
        *,
        vad_threshold: float | None = None,
        vad_min_silence_ms: int | None = None,
        vad_min_speech_ms: int | None = None,
        silence_timeout_s: float | None = None,
    ) -> None:
        """Per-session settings from the client's first message (before any audio)."""
        deps = self._deps
        if vad_threshold or vad_min_silence_ms or vad_min_speech_ms:
            self._stt.configure_vad(
                threshold=vad_threshold or deps.vad_threshold,
                min_silence_ms=vad_min_silence_ms or deps.vad_min_silence_ms,
                min_speech_ms=vad_min_speech_ms or deps.vad_min_speech_ms,
            )
        if silence_timeout_s is not None:
            self._silence_timeout_s = silence_timeout_s

    # ---- outputs --------------------------------------------------------------------------

    async def next_event(self) -> Event:
        """The next event for the client.

        Raises:
            ClientTooSlow: the client let the event queue fill up; the conversation is over
                (what is still queued is stale by now).
        """
        if self._too_slow is not None:
            raise self._too_slow
        return await self._events.get()

    def next_event_nowait(self) -> Event | None:
        """The next event, or None when there is none yet. Raises ``ClientTooSlow`` as
        ``next_event`` does."""
        if self._too_slow is not None:
            raise self._too_slow
        try:
            return self._events.get_nowait()
        except asyncio.QueueEmpty:
            return None

    @property
    def agent_active(self) -> bool:
        """The agent is thinking or has audio left to play."""
        responding = self._responder is not None and not self._responder.done()
        return responding or self.speaker.active

    # ---- control --------------------------------------------------------------------------

    def barge_in(self, *, reading: bool = False) -> None:
        """Stop the agent now: cancel its turn, drop every queued frame and record the turn as
        interrupted (now, not when the cancelled task next runs: what interrupted it comes
        after it), as far as it was heard. ``reading``: the user typed, so reads the agent's
        text: an answer whose text went out was read whole."""
        turn = self._cancel_responder()
        heard_s = None
        if turn is not None and not ((reading or self.reads_text) and turn.announced):
            heard_s = self._heard_seconds(turn)
        dropped = self.speaker.clear()
        self.stats.interruptions += 1
        self._emit(events.interruption(dropped_ms=dropped * 20))
        if turn is not None:
            self._finish_turn(turn, interrupted=True, heard_s=heard_s)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._responder is not None:
                self._responder.cancel()
                # Waits without raising what the responder raised: the only CancelledError out
                # of here is our own caller's, and it must reach them.
                await asyncio.wait([self._responder])
                self._report_failure(self._responder)
        finally:
            self._idle.cancel()
            try:
                await self._stt.aclose()
            finally:
                await self._writes.put(None)  # waits for room: the writer is draining the queue
                await self._writer  # every turn is recorded before the session is gone

    # ---- internals ------------------------------------------------------------------------

    async def _user_said(self, text: str, *, dtmf: str | None = None) -> None:
        self.stats.user_speech_end = time.monotonic()
        self._emit(events.user_transcript(text, final=True))
        self._persist(lambda: self._hooks.add_turn("user", text, False))
        user = self.end_user_id
        self._persist(lambda: self._hooks.remember(text, user))
        request = AgentRequest(
            agent=self.agent,
            user_text=text,
            history=tuple(self.history),
            end_user_id=self.end_user_id,
            dtmf=dtmf,
        )
        self._add_to_history(ChatMessage("user", text))
        self._start_turn(request, None)

    def _start_turn(self, request: AgentRequest | None, fixed_text: str | None) -> None:
        if (cut_short := self._cancel_responder()) is not None:
            self._finish_turn(cut_short, interrupted=True)
        self._turn = turn = _Turn()
        self._responder = asyncio.create_task(
            self._respond(request, fixed_text, turn), name="respond"
        )

    def _cancel_responder(self) -> _Turn | None:
        """Cancel the turn in progress; returns it (None: no turn was in progress)."""
        if self._responder is None or self._responder.done():
            return None
        self._responder.cancel()
        return self._turn

    async def _respond(
        self, request: AgentRequest | None, fixed_text: str | None, turn: _Turn
    ) -> None:
        screen = self._deps.screen_reply
        tts = TTSStream(
            self._engine,
            self._voice,
            self._deps.tts_executors[self._engine.name],
            screen=screen,
        )
        reply = turn.reply
        spoken = False

        async def produce() -> None:
            try:
                if fixed_text is not None:
                    reply.append(fixed_text)
                    tts.push_text(fixed_text)
                else:
                    assert request is not None
                    async for delta in self._deps.agent_engine.respond(request):
                        if turn.first_text_at is None:
                            turn.first_text_at = time.monotonic()
                        reply.append(delta)
                        tts.push_text(delta)
            finally:
                # Also on failure: the speaking side must not wait for text that never comes.
                tts.end_input()
            await self._screen_reply(reply)
            self._emit(events.agent_response("".join(reply).strip()))
            turn.announced = True

        producer = asyncio.create_task(produce(), name="agent-text")
        resampler: Resampler | None = None
        try:
            async for chunk in tts:
                pcm = chunk.pcm
                if chunk.sample_rate != SAMPLE_RATE:
                    resampler = resampler or Resampler(chunk.sample_rate, SAMPLE_RATE)
                    pcm = resampler.process(pcm)
                if not spoken:
                    spoken = True
                    self._agent_speaks(turn, answering=request is not None)
                turn.clauses.append(
                    SpokenClause(
                        chunk.text_offset,
                        chunk.text,
                        chunk.audio_offset,
                        chunk.duration,
                        chunk.alignment,
                    )
                )
                await self.speaker.put(pcm)
            if resampler is not None:
                await self.speaker.put(resampler.flush())
            self.speaker.flush_partial()
            await producer
            # The turn lasts until its audio has played out: a barge-in until then is an
            # interruption of this turn.
            await self.speaker.drained()
            self._finish_turn(turn, interrupted=False)
        except asyncio.CancelledError:
            producer.cancel()
            try:
                await asyncio.wait([producer])  # waits without raising what the task raised
            finally:
                self._finish_turn(turn, interrupted=True)
            self._report_failure(producer)
            raise
        except Exception as err:  # reported here: nobody awaits the responder
            producer.cancel()
            self._turn_failed(err)
            self._finish_turn(turn, interrupted=True)
            await asyncio.wait([producer])
            self._report_failure(producer, reported=err)
        finally:
            if not producer.done():
                producer.cancel()

    async def _screen_reply(self, reply: list[str]) -> None:
        """The text clients show and the transcript keep: a refused reply is replaced, as its
        audio was clause by clause."""
        if self._deps.screen_reply is None:
            return
        said = "".join(reply)
        if (allowed := await self._deps.screen_reply(said)) != said:
            reply[:] = [allowed]

    def _agent_speaks(self, turn: _Turn, *, answering: bool) -> None:
        """The turn's first audio: the figures users feel, and the turn's start."""
        now = time.monotonic()
        turn.first_frame = self.speaker.frames_queued
        self.stats.agent_audio_start.append(now)
        if answering and self.stats.user_speech_end is not None:
            self.stats.voice_to_voice.append(now - self.stats.user_speech_end)
            if turn.first_text_at is not None:
                # Where that time went, after the final transcript: the agent, then the voice.
                agent_s = max(0.0, turn.first_text_at - self.stats.user_speech_end)
                self._observe("agent", agent_s)
                self._observe("speech", now - turn.first_text_at)
        self._emit(events.turn("agent", "start"))

    def _turn_failed(self, err: Exception) -> None:
        """The client is told in the error tree's words; the operator gets the traceback of
        anything that is not one of our typed errors."""
        if isinstance(err, VoiceStreamError):
            log.warning("session %s: agent turn failed: %s", self.id, err)
            told = err
        else:
            log.error("session %s: agent turn failed", self.id, exc_info=err)
            told = EngineError("the agent failed to answer; please try again")
        self._emit(events.error(told.code, told.message))

    def _report_failure(
        self, task: asyncio.Task[None], *, reported: BaseException | None = None
    ) -> None:
        """A task we cancelled ourselves may still have failed first: that is worth seeing,
        not something to swallow along with the cancellation (``reported``: already seen)."""
        if not task.done() or task.cancelled() or (exc := task.exception()) in (None, reported):
            return
        if isinstance(exc, VoiceStreamError):
            log.warning("session %s: %s failed: %s", self.id, task.get_name(), exc)
        else:
            log.error("session %s: %s failed", self.id, task.get_name(), exc_info=exc)

    def _observe(self, stage: str, seconds: float) -> None:
        if self._deps.observe_stage is not None:
            self._deps.observe_stage(stage, seconds)

    def _heard_seconds(self, turn: _Turn) -> float:
        """How much of ``turn``'s audio has been handed to the transport so far."""
        if turn.first_frame is None:
            return 0.0
        frames = max(0, self.speaker.frames_dequeued - turn.first_frame)
        return frames * self.speaker.frame_bytes / 2 / self.speaker.sample_rate

    def _finish_turn(self, turn: _Turn, *, interrupted: bool, heard_s: float | None = None) -> None:
        """Record the turn once. ``heard_s``: a barge-in dropped the rest of its audio after
        that many seconds, and it is recorded as far as it was heard (None: as said; what was
        queued plays out, or the session is closing)."""
        if turn.recorded:
            return
        turn.recorded = True
        said = "".join(turn.reply)
        text = said.strip()
        if heard_s is not None:
            text = heard_prefix(said, turn.clauses, heard_s)
            if turn.announced and text != said.strip():
                self._emit(events.agent_response_correction(said.strip(), text))
        if turn.first_frame is not None or text:
            self._emit(events.turn("agent", "end"))
        if not text:
            return  # nothing was heard: nothing to remember or store
        self._add_to_history(ChatMessage("assistant", text))
        history = list(self.history)
        user = self.end_user_id
        self._persist(lambda: self._hooks.add_turn("agent", text, interrupted))
        self._persist(lambda: self._hooks.save_state(history, user))

    def _add_to_history(self, message: ChatMessage) -> None:
        self.history.append(message)
        self.history = _newest(
            self.history, self._deps.history_max_messages, self._deps.history_max_chars
        )

    def _persist(self, write: Callable[[], Awaitable[None]]) -> None:
        if self._writer.done():
            return
        try:
            self._writes.put_nowait(write)
        except asyncio.QueueFull:
            self._store_fell_behind()

    def _store_fell_behind(self) -> None:
        """The store takes writes far slower than the conversation makes them: the write is
        dropped, and the client told (once per backlog) that the conversation is not being
        kept, instead of memory growing for as long as the store stays slow."""
        self.stats.dropped_writes += 1
        if self._store_behind:
            return
        self._store_behind = True
        log.warning(
            "session %s: %d conversation writes waiting; dropping further ones",
            self.id,
            self._writes.qsize(),
        )
        err = ServiceUnavailable("the conversation store is falling behind: turns are not kept")
        self._emit(events.error(err.code, err.message))

    async def _write_loop(self) -> None:
        while (write := await self._writes.get()) is not None:
            if self._writes.empty():
                self._store_behind = False  # caught up: a new backlog is worth a new warning
            try:
                await write()
            except VoiceStreamError as err:
                # An outage the store could not ride out (its outbox failed too): the turn is
                # lost, and the client is told rather than left to believe it was kept.
                log.warning("session %s: could not record a turn: %s", self.id, err)
                self._emit(events.error(err.code, err.message))
            except Exception:  # persistence trouble must not kill the live conversation
                log.exception("session %s: could not record a turn", self.id)

    def _user_heard(self) -> None:
        self._last_activity = time.monotonic()
        self._reprompted = False

    async def _idle_watch(self) -> None:
        """Nobody speaks: ask once whether the user is still there, then hang up."""
        while True:
            await asyncio.sleep(_IDLE_POLL_S)
            now = time.monotonic()
            if self._user_speaking or self.agent_active or self._silence_timeout_s <= 0:
                self._last_activity = now
                continue
            if now - self._last_activity < self._silence_timeout_s:
                continue
            if not self._reprompted:
                self._reprompted = True
                self._last_activity = now
                self._start_turn(None, REPROMPT)
                continue
            self._emit({"type": "session_end", "reason": "silence_timeout"})
            self.ended.set()
            return

    def _emit(self, event: Event) -> None:
        if self._too_slow is not None:
            return  # the conversation is over; its transport is closing it
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            size = self._events.maxsize
            log.info("session %s: client left %d events unread; ending the session", self.id, size)
            self._too_slow = ClientTooSlow(
                f"the client left {size} events unread: it cannot keep up with the conversation"
            )


def _newest(history: list[ChatMessage], max_messages: int, max_chars: int) -> list[ChatMessage]:
    """The newest messages within both budgets; the newest one always, however long (the
    agent's own last reply, or the user's last words, matter most)."""
    kept: list[ChatMessage] = []
    chars = 0
    for message in reversed(history[-max_messages:] if max_messages > 0 else history[-1:]):
        chars += len(message.content)
        if kept and chars > max_chars:
            break
        kept.append(message)
    kept.reverse()
    return kept
