"""What the user heard of an agent turn cut short: the text up to the word being spoken.

An agent's reply is generated (and synthesized) faster than it is played, so when the user
barges in the agent has "said" more text than anyone heard. The conversation's history and the
stored transcript must hold what was heard, or the agent will later believe it told the user
things it never did (OpenAI's Realtime API trims its items for the same reason, and ElevenLabs
sends ``agent_response_correction``).

Each clause's audio is placed on the turn's clock as it is queued; the speaker counts the frames
handed to the transport. The cut falls in the clause playing at that moment: at the character
its alignment says was starting (else in proportion to the clause's length), carried to the end
of that word: a word begun is a word said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..engines.base import Alignment

__all__ = ["SpokenClause", "heard_prefix"]


@dataclass(frozen=True, slots=True)
class SpokenClause:
    """One clause queued for playback: where its text is in the reply and its audio on the
    turn's clock."""

    text_offset: int  # of the clause's text in the whole reply
    text: str
    start_s: float
    duration_s: float
    alignment: Alignment | None


def heard_prefix(reply: str, clauses: list[SpokenClause], heard_s: float) -> str:
    """The part of ``reply`` that ``heard_s`` seconds of the turn's audio said, stripped.
    Text whose audio was never queued was not heard."""
    end = 0
    for clause in clauses:
        clause_end = clause.text_offset + len(clause.text)
        if clause.start_s + clause.duration_s <= heard_s:
            end = clause_end
            continue
        elapsed = heard_s - clause.start_s
        if elapsed > 0:
            end = clause.text_offset + _chars_begun(clause, elapsed)
            end = _end_of_word(reply, end, clause_end)
        break
    return reply[:end].strip()


def _chars_begun(clause: SpokenClause, elapsed_s: float) -> int:
    """How many of the clause's characters had started ``elapsed_s`` into its audio."""
    alignment = clause.alignment
    if alignment is not None and "".join(alignment.chars) == clause.text:
        elapsed_ms = elapsed_s * 1000
        return sum(1 for start in alignment.char_start_ms if start < elapsed_ms)
    # No usable timing: speech runs at a roughly even rate through a clause, character i
    # starting at i / len of it.
    share = min(1.0, elapsed_s / clause.duration_s) if clause.duration_s > 0 else 1.0
    return math.ceil(len(clause.text) * share)


def _end_of_word(reply: str, at: int, limit: int) -> int:
    """``at`` moved forward to the end of the word it falls in (not past ``limit``)."""
    if at <= 0 or reply[at - 1].isspace():
        return at
    while at < limit and not reply[at].isspace():
        at += 1
    return at
