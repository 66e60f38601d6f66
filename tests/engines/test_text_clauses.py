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


HOURS = "Our office is open from nine in the morning to five in the evening on weekdays. "


def test_a_long_first_clause_is_cut_early_before_a_phrase() -> None:
    s = ClauseSplitter(first_clause_chars=32)
    out = s.push(HOURS + "Parking is free. ") + s.flush()
    # The first words go to the voice at once, cut where a phrase starts ("in the morning");
    # the rest comes in clauses as punctuation makes them.
    assert [c for _, c in out] == [
        "Our office is open from nine ",
        "in the morning to five in the evening on weekdays. ",
        "Parking is free. ",
    ]


def test_the_early_cut_is_the_same_whatever_the_text_arrives_in() -> None:
    whole = ClauseSplitter(first_clause_chars=32)
    expected = whole.push(HOURS) + whole.flush()
    for size in (1, 3, 7):  # characters per push: a streaming LLM's tokens
        s = ClauseSplitter(first_clause_chars=32)
        out = []
        for i in range(0, len(HOURS), size):
            out += s.push(HOURS[i : i + size])
        out += s.flush()
        assert "".join(c for _, c in out) == HOURS
        assert out[0] == expected[0], (size, out)


def test_first_clauses_near_the_limit_and_later_clauses_are_left_whole() -> None:
    s = ClauseSplitter(first_clause_chars=32)
    text = "The museum tour takes about two hours. Our office is open from nine in the morning."
    # 38 characters: within the slack, so the sentence stays whole; later clauses never cut early.
    assert [c for _, c in s.push(text + " ") + s.flush()] == [
        "The museum tour takes about two hours. ",
        "Our office is open from nine in the morning. ",
    ]
    # Without a phrase word in reach, the cut falls at the last space within the limit.
    s = ClauseSplitter(first_clause_chars=30)
    words = "Seventeen extraordinary elephants paraded majestically yesterday evening. "
    assert (s.push(words) + s.flush())[0][1] == "Seventeen extraordinary "
    # An engine that asks for nothing gets punctuation clauses only.
    assert ClauseSplitter().push(HOURS)[0][1] == HOURS
