from __future__ import annotations

from voicestream.engines.text_clauses import ClauseSplitter


def test_clauses_complete_only_at_punctuation_followed_by_space() -> None:
    s = ClauseSplitter()
    assert s.push("Thanks for calling, how can I") == [(0, "Thanks for calling, ")]
    assert s.push(" help? It costs 3.") == [(20, "how can I help? ")]
    assert s.push("5 dollars. OK") == [(36, "It costs 3.5 dollars. ")]
    assert s.flush() == [(58, "OK")]
    assert s.flush() == []


def test_offsets_cover_the_whole_text() -> None:
    text = "One. Two, three; four: five! Six? Seven\nEight nine"
    s = ClauseSplitter()
    out = []
    for ch in text:  # one character at a time, the worst case for a streaming client
        out += s.push(ch)
    out += s.flush()
    assert "".join(c for _, c in out) == text
    for offset, clause in out:
        assert text[offset : offset + len(clause)] == clause


def test_long_runs_are_cut_at_a_space() -> None:
    s = ClauseSplitter(max_clause_chars=40)
    out = s.push("word " * 30)
    assert out and all(len(c) <= 40 for _, c in out)
    assert all(c.endswith(" ") for _, c in out)


def test_punctuation_only_pieces_are_not_clauses() -> None:
    s = ClauseSplitter()
    assert s.push("... ") == []
    # Whatever is flushed holds nothing speakable; the engine returns no audio for it.
    assert all(c.strip(" .") == "" for _, c in s.flush())
