"""Small helpers shared by the tests (not fixtures): word error rate, the sentence corpus."""

from __future__ import annotations

import re
from pathlib import Path

import jiwer

DATA = Path(__file__).parent / "data"


def sentences() -> list[str]:
    return [s for s in (DATA / "sentences.txt").read_text().splitlines() if s.strip()]


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]", " ", text.lower())).strip()


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over a whole corpus (not the mean of per-sentence rates)."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) or "<empty>" for h in hypotheses]
    return float(jiwer.wer(refs, hyps))
