"""Streaming TTS on top of a clause-at-a-time engine.

Text is pushed as it arrives; every completed clause is synthesized at once on the engine's
executor while the caller is still sending text, and audio comes out in order. Scheduling is by
deadline: a stream's first clause is due the moment it is asked for; every later clause is due
when the audio already delivered would finish playing. With many streams that puts every
stream's first audio ahead of other streams' continuations, yet no stream runs dry.

Every clause passes the stream's text screen (content moderation) before it is synthesized.
The screen comes from above (engines know no workspaces): given to the stream, or else the one
the request, socket or job that opened it set in ``TEXT_SCREEN``. Setting it where the caller
is known (``server/text_screening.py`` for every request, the job worker, the Wyoming
listener) covers every route, socket and job that speaks, with no route able to forget it.
Clauses already queued are screened together, so a request's whole text is one check before
its first audio.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from ..errors import EngineError
from .alignment import has_speakable
from .base import Alignment, Synthesis, TTSEngine, Voice
from .executor import InferenceExecutor
from .silence import trim_leading_silence
from .text_clauses import ClauseSplitter

__all__ = ["TEXT_SCREEN", "SpeechChunk", "TTSStream", "TextScreen"]

log = logging.getLogger(__name__)

# Lead-in kept before the first sound of a stream (latency the listener hears), and the most
# silence kept before a later clause (the previous clause already ends in a pause).
_FIRST_LEAD_IN_MS = 30.0
_CLAUSE_LEAD_IN_MS = 100.0  # after a comma or semicolon
_SENTENCE_LEAD_IN_MS = 300.0  # after . ! ? — listeners (and recognizers) expect a real pause
# Start a continuation this long before the listener would run out of audio, to absorb queueing
# jitter and the time the audio spends on the wire.
_CONTINUATION_SLACK_S = 0.25


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """The audio of one clause, in stream order."""

    index: int
    text: str
    text_offset: int  # offset of ``text`` in everything pushed to the stream
    pcm: bytes
    sample_rate: int
    alignment: Alignment | None
    audio_offset: float  # seconds of stream audio before this chunk
    synth_seconds: float  # engine time for this clause, excluding queueing
    queued_seconds: float  # time between asking and the engine starting

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


_END = object()

# Text about to be spoken -> the text to speak instead (the same text, or a refusal in its
# place for an agent's reply); raises (a VoiceStreamError) to refuse the stream.
TextScreen = Callable[[str], Awaitable[str]]
TEXT_SCREEN: ContextVar[TextScreen | None] = ContextVar("voicestream_text_screen", default=None)


class TTSStream:
    """One synthesis stream: ``push_text``/``flush``/``end_input``, then iterate for chunks."""

    def __init__(
        self,
        engine: TTSEngine,
        voice: Voice,
        executor: InferenceExecutor,
        *,
        max_clause_chars: int = 300,
        speed: float = 1.0,
        screen: TextScreen | None = None,
    ) -> None:
        self._engine = engine
        self._screen = screen or TEXT_SCREEN.get()
        # Clauses queued but not yet screened, and what screening made of those that were.
        self._unscreened: list[tuple[int, str]] = []
        self._screened: dict[int, str] = {}
        self._voice = voice
        # Spoken at ``speed`` by the engine itself as far as it can (Piper); ``tempo`` tells
        # the output stage the rest, to apply to the audio.
        self._speed = 1.0
        self._native_speed = 1.0
        self._tempo = 1.0
        self.set_speed(speed)
        self._executor = executor
        self._splitter = ClauseSplitter(max_clause_chars)
        # Clauses waiting for synthesis, in order; unbounded in count but bounded in total
        # characters by the caller's text limits.
        self._clauses: asyncio.Queue[tuple[int, str] | object] = asyncio.Queue()
        self._ended = False
        self._first_audio_at: float | None = None
        self._audio_seconds = 0.0
        self.first_clause_at: float | None = None  # when the first speakable text arrived
        self._last_text = ""  # the previous clause, for the pause before the next

    @property
    def voice(self) -> Voice:
        return self._voice

    @property
    def engine_name(self) -> str:
        return self._engine.name

    @property
    def tempo(self) -> float:
        """The speed-up the output stage still has to apply (1.0: none, the engine spoke at
        the asked speed or none was asked)."""
        return self._tempo

    def set_speed(self, speed: float) -> None:
        """Speak the clauses not yet synthesized at ``speed`` (sockets that take voice settings
        with their first text). ``tempo`` changes with it, so an output stage that applies it
        must read it before the first audio."""
        self._speed = speed
        self._native_speed = self._engine.native_speed(self._voice, speed) if speed != 1.0 else 1.0
        self._tempo = speed / self._native_speed

    def push_text(self, text: str) -> None:
        if self._ended:
            raise RuntimeError("push_text after end_input")
        self._enqueue(self._splitter.push(text))

    def _enqueue(self, clauses: list[tuple[int, str]]) -> None:
        if clauses and self.first_clause_at is None:
            self.first_clause_at = time.monotonic()
        for clause in clauses:
            self._clauses.put_nowait(clause)
            if self._screen is not None:
                self._unscreened.append(clause)

    def flush(self) -> None:
        """Synthesize whatever is buffered now, even without a clause boundary."""
        if self._ended:
            return
        self._enqueue(self._splitter.flush())

    def end_input(self) -> None:
        if self._ended:
            return
        self.flush()
        self._ended = True
        self._clauses.put_nowait(_END)

    def mark_first_audio(self, at: float | None = None) -> None:
        """Tell the scheduler when the listener started hearing audio (default: now)."""
        if self._first_audio_at is None:
            self._first_audio_at = time.monotonic() if at is None else at

    async def __aiter__(self) -> AsyncIterator[SpeechChunk]:
        index = 0
        while True:
            item = await self._clauses.get()
            if item is _END:
                return
            assert isinstance(item, tuple)
            offset, text = item
            if self._screen is not None:
                text = await self._screen_up_to(offset)
                if not text:
                    continue  # its batch's replacement went out with an earlier clause
            chunk = await self._synthesize(index, offset, text)
            if not chunk.pcm:
                if has_speakable(text):
                    # Words that come back silent are dropped from the stream without an
                    # error; say so, or a missing clause looks like a timing bug downstream.
                    log.warning(
                        "%s gave no audio for clause %d %r (voice %s)",
                        self._engine.name,
                        index,
                        text[:80],
                        self._voice.id,
                    )
                continue  # nothing speakable in this clause (e.g. only punctuation)
            if self._first_audio_at is None:
                self._first_audio_at = time.monotonic()
            self._audio_seconds += chunk.duration
            index += 1
            yield chunk

    async def screen_queued(self) -> None:
        """Screen the text queued so far now rather than at its first clause: for a caller
        with several streams (a dialogue's turns) whose refusal must come before any audio."""
        if self._unscreened:
            await self._screen_up_to(self._unscreened[0][0], keep=True)

    async def _screen_up_to(self, offset: int, *, keep: bool = False) -> str:
        """The text to speak for the clause at ``offset``: screens every clause queued so far
        in one call, unless an earlier call covered it."""
        if offset not in self._screened:
            assert self._screen is not None
            batch, self._unscreened = self._unscreened, []
            asked = "".join(text for _, text in batch)
            said = await self._screen(asked)
            if said == asked:
                self._screened.update(batch)
            else:
                # Replaced: the replacement is spoken once, in place of the whole batch.
                self._screened.update((at, "") for at, _ in batch)
                self._screened[batch[0][0]] = said
        return self._screened[offset] if keep else self._screened.pop(offset)

    async def _synthesize(self, index: int, offset: int, text: str) -> SpeechChunk:
        deadline = (
            time.monotonic()
            if self._first_audio_at is None
            else self._first_audio_at + self._audio_seconds - _CONTINUATION_SLACK_S
        )
        asked = time.monotonic()
        started = 0.0

        if self._audio_seconds == 0:
            keep_ms = _FIRST_LEAD_IN_MS
        elif self._last_text.rstrip().rstrip("\"')]").endswith((".", "!", "?", "\u2026")):
            keep_ms = _SENTENCE_LEAD_IN_MS
        else:
            keep_ms = _CLAUSE_LEAD_IN_MS
        self._last_text = text

        def work() -> Synthesis:
            nonlocal started
            started = time.monotonic()
            if self._native_speed != 1.0:
                spoken = self._engine.synthesize_at(text, self._voice, self._speed)
            else:
                spoken = self._engine.synthesize(text, self._voice)
            return trim_leading_silence(spoken, keep_ms)

        try:
            result = await self._executor.run(work, deadline=deadline)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"{self._engine.name} failed: {exc}") from exc
        done = time.monotonic()
        return SpeechChunk(
            index=index,
            text=text,
            text_offset=offset,
            pcm=result.pcm,
            sample_rate=result.sample_rate,
            alignment=result.alignment,
            audio_offset=self._audio_seconds,
            synth_seconds=done - started,
            queued_seconds=started - asked,
        )
