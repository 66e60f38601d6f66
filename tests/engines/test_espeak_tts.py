"""espeak-ng through ctypes: languages, word-event alignment, serialized global state."""

from __future__ import annotations

import itertools
import threading

import pytest
from engine_audio import rms

from voicestream.engines.base import Synthesis, Voice
from voicestream.engines.espeak_tts import EspeakTTS
from voicestream.errors import UnknownVoice


@pytest.fixture(scope="module")
def espeak() -> EspeakTTS:
    return EspeakTTS()


def _voice(espeak: EspeakTTS, voice_id: str) -> Voice:
    return next(v for v in espeak.voices() if v.id == voice_id)


def test_catalog_is_curated_and_installed(espeak: EspeakTTS) -> None:
    voices = {v.id: v for v in espeak.voices()}
    assert 20 <= len(voices) <= 40
    for expected in ("espeak-en-us", "espeak-de", "espeak-fr", "espeak-es", "espeak-ru"):
        assert expected in voices
    assert voices["espeak-de"].language == "de"
    assert all(v.engine == "espeak-ng" and v.sample_rate == 22050 for v in voices.values())


def test_german_sentence(espeak: EspeakTTS) -> None:
    text = "Guten Tag, wie geht es Ihnen heute?"
    syn = espeak.synthesize(text, _voice(espeak, "espeak-de"))
    assert syn.sample_rate == 22050
    seconds = len(syn.pcm) / 2 / syn.sample_rate
    assert 1.5 < seconds < 5.0
    assert rms(syn.pcm) > 0.02
    al = syn.alignment
    assert al is not None and "".join(al.chars) == text
    starts = al.char_start_ms
    assert all(a <= b for a, b in itertools.pairwise(starts))
    assert starts[-1] + al.char_duration_ms[-1] <= seconds * 1000
    # Word events place "heute" well after "Guten".
    assert starts[text.index("heute")] - starts[0] > 800


def test_every_catalog_voice_speaks(espeak: EspeakTTS) -> None:
    native = {"espeak-he": "\u05e9\u05dc\u05d5\u05dd"}  # espeak's Hebrew reads no digits
    for voice in espeak.voices():
        syn = espeak.synthesize(native.get(voice.id, "1 2 3"), voice)
        assert rms(syn.pcm) > 0.01, voice.id


def test_nothing_to_say_and_unknown_voice(espeak: EspeakTTS) -> None:
    assert espeak.synthesize(" ... ", _voice(espeak, "espeak-en-us")).pcm == b""
    with pytest.raises(UnknownVoice):
        espeak.synthesize("hi", Voice("espeak-xx", "?", "xx", "male", 22050, "espeak-ng"))


def test_concurrent_callers_get_their_own_audio(espeak: EspeakTTS) -> None:
    """espeak-ng has one global synthesizer: the engine's lock must keep calls apart.

    espeak is not sample-exact from call to call (a few ms of length jitter, serial too), so
    compare word timing, length and loudness closely instead of bytes.
    """
    jobs = [("espeak-de", "Eins zwei drei."), ("espeak-fr", "Un deux trois quatre cinq.")]
    serial = {job: espeak.synthesize(job[1], _voice(espeak, job[0])) for job in jobs}
    bad: list[str] = []

    def worker(k: int) -> None:
        for i in range(20):
            job = jobs[(i + k) % 2]
            got, want = espeak.synthesize(job[1], _voice(espeak, job[0])), serial[job]
            same_length = abs(len(got.pcm) - len(want.pcm)) < 0.02 * len(want.pcm)
            same_level = abs(rms(got.pcm) - rms(want.pcm)) < 0.1 * rms(want.pcm)
            if not (same_length and same_level and _close_timing(got, want)):
                bad.append(job[0])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def _close_timing(a: Synthesis, b: Synthesis) -> bool:
    assert a.alignment is not None and b.alignment is not None
    pairs = zip(a.alignment.char_start_ms, b.alignment.char_start_ms, strict=True)
    return all(abs(x - y) <= 20 for x, y in pairs)


def test_warm_up_is_quiet_for_languages_without_digits(
    espeak: EspeakTTS, caplog: pytest.LogCaptureFixture
) -> None:
    # Hebrew speaks no "1": warming up must load its dictionary without a warning at start.
    with caplog.at_level("WARNING", logger="voicestream"):
        espeak.warm_up()
    assert "espeak-he" in {v.id for v in espeak.voices()}
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
