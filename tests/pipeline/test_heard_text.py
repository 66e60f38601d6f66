"""What the user heard of an interrupted answer, from clause timing and character alignment."""

from __future__ import annotations

from voicestream.engines.base import Alignment
from voicestream.pipeline.heard_text import SpokenClause, heard_prefix

REPLY = "It opens at nine. Parking is free behind the building."
FIRST, SECOND = "It opens at nine. ", "Parking is free behind the building."


def _aligned(text: str, ms_per_char: int) -> Alignment:
    n = len(text)
    return Alignment(tuple(text), tuple(i * ms_per_char for i in range(n)), (ms_per_char,) * n)


def _clauses(aligned: bool) -> list[SpokenClause]:
    # 50 ms a character: the first clause lasts 0.9 s, the second 1.8 s.
    first = SpokenClause(0, FIRST, 0.0, 0.9, _aligned(FIRST, 50) if aligned else None)
    second_at = len(FIRST)
    second = SpokenClause(second_at, SECOND, 0.9, 1.8, _aligned(SECOND, 50) if aligned else None)
    return [first, second]


def test_text_whose_audio_was_never_queued_was_not_heard() -> None:
    assert heard_prefix(REPLY, _clauses(True)[:1], 10.0) == "It opens at nine."
    assert heard_prefix(REPLY, [], 10.0) == ""


def test_the_cut_falls_after_the_word_being_spoken() -> None:
    clauses = _clauses(True)
    assert heard_prefix(REPLY, clauses, 0.0) == ""
    assert heard_prefix(REPLY, clauses, 0.01) == "It"  # a word begun is a word said
    assert heard_prefix(REPLY, clauses, 0.9) == "It opens at nine."
    # "Parking is f": 12 characters of the second clause began within 0.6 s (50 ms each).
    assert heard_prefix(REPLY, clauses, 0.9 + 0.6) == "It opens at nine. Parking is free"
    assert heard_prefix(REPLY, clauses, 10.0) == REPLY


def test_a_clause_without_timing_is_cut_in_proportion() -> None:
    clauses = _clauses(False)
    # A third of the second clause's 36 characters: "Parking is f" → to the end of "free".
    assert heard_prefix(REPLY, clauses, 0.9 + 0.6) == "It opens at nine. Parking is free"
    assert heard_prefix(REPLY, clauses, 0.45) == "It opens"  # half of 18: "It opens "


def test_alignment_that_does_not_match_the_text_is_not_trusted() -> None:
    wrong = Alignment(("x",), (0,), (10,))
    clause = SpokenClause(0, FIRST, 0.0, 0.9, wrong)
    assert heard_prefix(FIRST, [clause], 0.45) == "It opens"
