"""The normalisation stt_quality.py scores WER after: formatting must not count as mishearing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_SOURCE = Path(__file__).resolve().parents[2] / "benchmarks" / "wer_normalization.py"


def _load() -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package: load the module from its file.
    spec = importlib.util.spec_from_file_location("wer_normalization", _SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("wer_normalization", module)
    spec.loader.exec_module(module)
    return module


normalization = _load()


@pytest.mark.parametrize(
    ("heard", "spoken"),
    [
        ("The museum opens at 9:30 a.m.", "the museum opens at nine thirty a m"),
        ("The train leaves at 7.30.", "the train leaves at seven thirty"),
        ("It leaves at 730, by 1045.", "it leaves at seven thirty by ten forty five"),
        ("Room 730 is free.", "room seven hundred thirty is free"),
        ("We open at 9:00 and 10:05.", "we open at nine and ten oh five"),
        ("Tickets cost $12.", "tickets cost twelve dollars"),
        ("Prices went up by 5%.", "prices went up by five percent"),
        ("A high of 22°C.", "a high of twenty two degrees"),
        (
            "The room on the 2nd floor, 21st street.",
            "the room on the second floor twenty first street",
        ),
        ("More than 40,000 books.", "more than forty thousand books"),
        ("About 2.5 hours.", "about two point five hours"),
        ("It's a high-quality tour!", "it's a high quality tour"),
        ("'Quoted' words", "quoted words"),
    ],
)
def test_transcript_formatting_becomes_spoken_words(heard: str, spoken: str) -> None:
    assert normalization.normalize(heard) == spoken


def test_references_written_in_words_are_only_lowercased_and_stripped() -> None:
    ref = "Our office is open from nine in the morning to five in the evening."
    assert normalization.normalize(ref) == ref.lower().rstrip(".")


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (15, "fifteen"),
        (40, "forty"),
        (120, "one hundred twenty"),
        (1_200_345, "one million two hundred thousand three hundred forty five"),
    ],
)
def test_number_words(n: int, words: str) -> None:
    assert normalization.number_words(n) == words
