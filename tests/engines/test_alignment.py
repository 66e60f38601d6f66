"""Character alignment from word spans, text sanitizing and ASCII folding."""

from __future__ import annotations

import itertools

from voicestream.engines.alignment import (
    TimedSpan,
    build_alignment,
    has_speakable,
    sanitize,
    silent_alignment,
)
from voicestream.engines.ascii_fold import fold_to_ascii
from voicestream.engines.base import Alignment


def _check(alignment: Alignment, text: str, audio_ms: int) -> None:
    assert "".join(alignment.chars) == text
    assert len(alignment.char_start_ms) == len(alignment.char_duration_ms) == len(text)
    starts = alignment.char_start_ms
    assert all(a <= b for a, b in itertools.pairwise(starts))
    assert all(d >= 0 for d in alignment.char_duration_ms)
    assert all(s + d <= audio_ms for s, d in zip(starts, alignment.char_duration_ms, strict=True))


def test_words_share_their_time_and_gaps_get_the_pauses() -> None:
    text = "Hi, you."
    spans = [TimedSpan(0, 2, 100, 300), TimedSpan(4, 7, 500, 800)]
    al = build_alignment(text, spans, 1000)
    _check(al, text, 1000)
    assert al.char_start_ms[:2] == (100, 200)
    assert al.char_duration_ms[:2] == (100, 100)
    # ", " fills the pause between the words; "." takes the tail of the audio.
    assert al.char_start_ms[2:4] == (300, 400)
    assert al.char_start_ms[4] == 500
    assert al.char_start_ms[7] == 800 and al.char_duration_ms[7] == 200


def test_out_of_order_overlapping_and_out_of_range_spans_are_ignored() -> None:
    text = "one two"
    spans = [
        TimedSpan(4, 7, 400, 600),
        TimedSpan(0, 3, 0, 200),  # before the previous span: dropped
        TimedSpan(5, 9, 700, 900),  # past the text: dropped
    ]
    al = build_alignment(text, spans, 650)
    _check(al, text, 650)
    assert al.char_start_ms[4] == 400


def test_times_past_the_audio_are_clamped() -> None:
    text = "abc"
    al = build_alignment(text, [TimedSpan(0, 3, 50, 5000)], 300)
    _check(al, text, 300)
    assert al.char_start_ms[-1] + al.char_duration_ms[-1] == 300


def test_no_spans_spreads_the_text_over_the_audio() -> None:
    al = build_alignment("abcd", [], 400)
    assert al.char_start_ms == (0, 100, 200, 300)


def test_empty_text() -> None:
    assert build_alignment("", [], 100) == Alignment((), (), ())
    assert silent_alignment("ab") == Alignment(("a", "b"), (0, 0), (0, 0))


def test_sanitize_keeps_indices_and_speakable_ignores_punctuation() -> None:
    assert sanitize("a\x00b\x07c\n") == "a b c "
    assert not has_speakable("  ...!? \t—")
    assert has_speakable("$") and has_speakable("5") and has_speakable("é")


def test_fold_to_ascii_maps_back_to_original_characters() -> None:
    folded, origin = fold_to_ascii("Grüße “ok” 😀 naïve")
    assert folded == 'Grusse "ok"   naive'
    assert len(origin) == len(folded)
    assert origin[folded.index("ss")] == 3 and origin[folded.index("ss") + 1] == 3
    assert folded.isascii()
    assert fold_to_ascii("u\u0308x") == ("ux", [0, 2])  # combining mark joins its letter
