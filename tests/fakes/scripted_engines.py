"""Engines with scripted behaviour, for driving the session core without models or sockets.

Each one implements the real contract (``engines/base.py``, ``engines/agents/base.py``) with
behaviour a test decides: a VAD that hears speech wherever the audio is loud, an STT that
answers each utterance with the next transcript of its script, a TTS that speaks every clause
as a tone of known length, and an agent that replies with scripted text at scripted times.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voicestream.engines.agents.base import AgentEngine, AgentRequest
from voicestream.engines.base import (
    STTDecoder,
    STTEngine,
    Synthesis,
    Transcript,
    TTSEngine,
    VADModel,
    VADState,
    Voice,
)

__all__ = [
    "RATE",
    "EnergyVAD",
    "Reply",
    "ScriptedAgent",
    "ScriptedSTT",
    "ToneTTS",
    "silence",
    "speech",
]

RATE = 16000
_LOUD = 8000  # amplitude of the "speech" the tests feed


def speech(ms: int) -> bytes:
    """``ms`` of loud audio: what ``EnergyVAD`` hears as speech."""
    return _tone(ms, 220.0, _LOUD)


def silence(ms: int) -> bytes:
    return bytes(RATE * ms // 1000 * 2)


def _tone(ms: int, hz: float, amplitude: int) -> bytes:
    n = RATE * ms // 1000
    # A cosine starts at full amplitude, so no leading sample reads as silence.
    t = np.arange(n, dtype=np.float64) / RATE
    return (amplitude * np.cos(2 * math.pi * hz * t)).astype("<i2").tobytes()


class _NoState(VADState):
    pass


class EnergyVAD(VADModel):
    """Speech wherever a window's RMS is loud: the test's audio decides where speech is."""

    sample_rate = RATE
    window_samples = 512
    name = "energy-vad"

    def new_state(self) -> VADState:
        return _NoState()

    def speech_probability(self, state: VADState, window: npt.NDArray[np.float32]) -> float:
        rms = float(np.sqrt(np.mean(np.square(window))))
        return 1.0 if rms > 0.05 else 0.0


class _ScriptedDecoder(STTDecoder):
    def __init__(self, engine: ScriptedSTT) -> None:
        self._engine = engine
        self.samples = 0

    def start(self) -> None:
        self.samples = 0

    def feed(self, pcm: bytes) -> str:
        self.samples += len(pcm) // 2
        upcoming = self._engine.upcoming()
        # After a quarter second of audio the first word is "recognized", as a partial.
        return upcoming.split(" ")[0] if self.samples >= RATE // 4 else ""

    def finish(self) -> Transcript:
        return Transcript(self._engine.next_transcript())


class ScriptedSTT(STTEngine):
    """Answers the n-th utterance the VAD cuts with the n-th transcript (then with "")."""

    name = "scripted-stt"
    sample_rate = RATE
    language = "en"

    def __init__(self, transcripts: Sequence[str] = ()) -> None:
        super().__init__()
        self._script = deque(transcripts)
        self._lock = threading.Lock()  # decoders run on executor threads
        self.utterances = 0

    def say(self, *transcripts: str) -> None:
        with self._lock:
            self._script.extend(transcripts)

    def upcoming(self) -> str:
        with self._lock:
            return self._script[0] if self._script else ""

    def next_transcript(self) -> str:
        with self._lock:
            self.utterances += 1
            return self._script.popleft() if self._script else ""

    def acquire(self) -> STTDecoder:
        return _ScriptedDecoder(self)

    def release(self, decoder: STTDecoder, *, learn: bool = True) -> None:
        return None


class ToneTTS(TTSEngine):
    """Every clause is a tone of ``ms_per_clause`` milliseconds at 16 kHz; records the texts."""

    name = "tone"

    def __init__(self, ms_per_clause: int = 300) -> None:
        self.ms_per_clause = ms_per_clause
        self.voice = Voice("tone", "Tone", "en-US", "neutral", RATE, self.name)
        self.spoken: list[str] = []
        self._lock = threading.Lock()

    def voices(self) -> list[Voice]:
        return [self.voice]

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        with self._lock:
            self.spoken.append(text)
        return Synthesis(_tone(self.ms_per_clause, 440.0, 4000), RATE)

    @property
    def frame(self) -> bytes:
        """The first 20 ms frame of every clause, to tell agent audio from padding."""
        return _tone(20, 440.0, 4000)


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: text deltas, a pause before each, and whether to then hang on
    (a turn that keeps thinking until it is cancelled), fail once the deltas are out (a bug in
    the agent, not one of our typed errors), or fail when cancelled."""

    deltas: tuple[str, ...]
    pause_s: float = 0.0
    hang: bool = False
    fail: bool = False
    fail_when_cancelled: bool = False


class ScriptedAgent(AgentEngine):
    """Answers each request with the next scripted ``Reply``; records what it was asked."""

    name = "scripted-agent"

    def __init__(self, replies: Sequence[Reply | str] = ()) -> None:
        self._replies: deque[Reply] = deque(_reply(r) for r in replies)
        self.requests: list[AgentRequest] = []
        self.cancelled = 0

    def answer(self, *replies: Reply | str) -> None:
        self._replies.extend(_reply(r) for r in replies)

    async def respond(self, request: AgentRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        reply = self._replies.popleft() if self._replies else Reply(("OK.",))
        try:
            for delta in reply.deltas:
                if reply.pause_s:
                    await asyncio.sleep(reply.pause_s)
                yield delta
            if reply.fail:
                raise RuntimeError("the agent broke mid-answer")
            if reply.hang:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            if reply.fail_when_cancelled:
                raise RuntimeError("the agent's clean-up failed") from None
            raise


def _reply(reply: Reply | str) -> Reply:
    return reply if isinstance(reply, Reply) else Reply((reply,))
