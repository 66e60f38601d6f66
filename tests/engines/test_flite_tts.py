"""flite through ctypes: audio, catalog, character alignment, robustness and thread safety."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
from engine_audio import rms, to_float

from voicestream.engines.base import Alignment, Synthesis, Voice
from voicestream.engines.flite_tts import FliteTTS
from voicestream.errors import UnknownVoice


def _voice(flite: FliteTTS, voice_id: str) -> Voice:
    return next(v for v in flite.voices() if v.id == voice_id)


def _assert_alignment_covers(syn: Synthesis, text: str) -> Alignment:
    al = syn.alignment
    assert al is not None
    assert "".join(al.chars) == text
    starts, durations = al.char_start_ms, al.char_duration_ms
    assert len(starts) == len(durations) == len(text)
    assert all(a <= b for a, b in itertools.pairwise(starts))
    audio_ms = len(syn.pcm) / 2 * 1000 / syn.sample_rate
    assert all(0 <= s and s + d <= audio_ms for s, d in zip(starts, durations, strict=True))
    return al


def test_catalog(flite: FliteTTS) -> None:
    voices = {v.id: v for v in flite.voices()}
    assert set(voices) == {"slt", "rms", "awb", "kal16"}
    assert voices["slt"].gender == "female" and voices["slt"].language == "en-US"
    assert voices["awb"].language.startswith("en-GB")
    assert all(v.engine == "flite" and v.sample_rate == 16000 for v in voices.values())


@pytest.mark.parametrize("voice_id", ["slt", "rms", "awb", "kal16"])
def test_every_voice_speaks_at_its_catalog_rate(flite: FliteTTS, voice_id: str) -> None:
    voice = _voice(flite, voice_id)
    syn = flite.synthesize("Good morning.", voice)
    assert syn.sample_rate == voice.sample_rate == 16000
    assert 0.4 < len(syn.pcm) / 2 / syn.sample_rate < 2.5
    assert rms(syn.pcm) > 0.01


def test_hello_world_audio_and_alignment(flite: FliteTTS) -> None:
    text = "Hello world."
    syn = flite.synthesize(text, _voice(flite, "slt"))
    seconds = len(syn.pcm) / 2 / syn.sample_rate
    assert 0.6 < seconds < 2.0
    assert rms(syn.pcm) > 0.02
    al = _assert_alignment_covers(syn, text)
    hello, world = al.char_start_ms[0], al.char_start_ms[6]
    # flite opens with a short pause; "world" starts after "hello" has been said.
    assert 50 <= hello <= 400
    assert world - hello >= 250
    # The alignment's speech matches where the audio is loud.
    samples = np.abs(to_float(syn.pcm))
    loud = np.flatnonzero(samples > 0.05)
    onset_ms = loud[0] / syn.sample_rate * 1000
    assert abs(onset_ms - hello) < 120


def test_tokens_flite_expands_map_back_onto_the_original_text(flite: FliteTTS) -> None:
    text = "It costs $3.50, Dr. Smith!"
    syn = flite.synthesize(text, _voice(flite, "slt"))
    al = _assert_alignment_covers(syn, text)
    dollar = text.index("$")
    smith = text.index("Smith")
    # "$3.50" is four spoken words: it must take far longer than one character's share.
    assert al.char_start_ms[text.index(",")] - al.char_start_ms[dollar] > 800
    assert al.char_start_ms[smith] > al.char_start_ms[dollar]


@pytest.mark.parametrize("text", ["", "   ", "...", "?!", " - ", "\x00\x01"])
def test_nothing_to_say_gives_empty_audio(flite: FliteTTS, text: str) -> None:
    syn = flite.synthesize(text, _voice(flite, "slt"))
    assert syn.pcm == b""
    assert syn.alignment is not None and "".join(syn.alignment.chars) == text


def test_control_characters_and_unicode_are_spoken_around(flite: FliteTTS) -> None:
    text = "Caf\u00e9 \x00na\u00efve\x07 \u201cquoted\u201d \U0001f600 end\n"
    syn = flite.synthesize(text, _voice(flite, "slt"))
    assert len(syn.pcm) / 2 / syn.sample_rate > 1.0
    _assert_alignment_covers(syn, text)


def test_long_text_does_not_crash(flite: FliteTTS) -> None:
    text = "This is sentence number 42, and it keeps going. " * 200  # ~9,600 characters
    syn = flite.synthesize(text, _voice(flite, "kal16"))
    assert len(syn.pcm) / 2 / syn.sample_rate > 300
    _assert_alignment_covers(syn, text)


def test_one_huge_token_is_split_not_choked_on(flite: FliteTTS) -> None:
    # flite's cost grows faster than linearly with token length: unsplit, this one 3,000-letter
    # "word" takes ~4 s; split into 64-letter tokens, ~1 s.
    text = "a" * 3000
    syn = flite.synthesize(text, _voice(flite, "kal16"))
    assert len(syn.pcm) > 0
    _assert_alignment_covers(syn, text)


def test_unknown_voice(flite: FliteTTS) -> None:
    stranger = Voice("nope", "Nope", "en-US", "female", 16000, "flite")
    with pytest.raises(UnknownVoice):
        flite.synthesize("hi", stranger)


_TEXTS = (
    "Thanks for calling, how can I help you today?",
    "The quick brown fox jumps over the lazy dog.",
    "It is 42 degrees in Paris on May 3rd.",
    "Please hold.",
)


@pytest.mark.parametrize("voice_id", ["slt", "rms", "awb"])
def test_the_same_text_gives_the_same_audio_whatever_came_before(
    flite: FliteTTS, voice_id: str
) -> None:
    """The clustergen voices' excitation noise comes from libc rand(); unseeded, a sentence's
    audio depended on everything synthesized before it in the process (and so did how well a
    recognizer heard it, which made transcription tests depend on their order)."""
    voice = _voice(flite, voice_id)
    text = "Please call me back tomorrow morning."
    first = flite.synthesize(text, voice)
    flite.synthesize("Something else entirely, to move the generator along.", voice)
    again = flite.synthesize(text, voice)
    assert again.pcm == first.pcm
    assert again.alignment == first.alignment


def test_concurrent_synthesis_matches_serial(flite: FliteTTS) -> None:
    """Four threads share each voice; outputs must equal the serial ones.

    kal16 is deterministic, so byte equality. slt draws excitation noise from libc rand(), which
    concurrent syntheses share: lengths and alignments must be identical and the waveforms must
    correlate closely.
    """
    voices = [_voice(flite, "kal16"), _voice(flite, "slt")]
    serial = {(v.id, t): flite.synthesize(t, v) for v in voices for t in _TEXTS}
    failures: list[str] = []

    def worker(k: int) -> None:
        for i in range(24):
            voice = voices[(i + k) % 2]
            text = _TEXTS[(i * 3 + k) % len(_TEXTS)]
            got, want = flite.synthesize(text, voice), serial[(voice.id, text)]
            problem = _difference(voice.id, got, want)
            if problem:
                failures.append(f"{voice.id} {text!r}: {problem}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]


def _difference(voice_id: str, got: Synthesis, want: Synthesis) -> str | None:
    if voice_id == "kal16":
        return None if got == want else "bytes differ"
    if len(got.pcm) != len(want.pcm) or got.alignment != want.alignment:
        return "length or alignment differs"
    corr = float(np.corrcoef(to_float(got.pcm), to_float(want.pcm))[0, 1])
    return None if corr > 0.97 else f"correlation {corr:.3f}"
