"""Engine fixtures: each real engine loads once per session; flite provides the test speech."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from engine_audio import SpeechFactory

from voicestream.engines.flite_tts import FliteTTS
from voicestream.engines.pocketsphinx_stt import PocketsphinxSTT
from voicestream.engines.silero_vad import SileroVAD

# tests/helpers.py (shared corpus, WER) is importable through tests/conftest.py; keep it so when
# this directory runs on its own (--confcutdir=tests/engines).
_TESTS_DIR = str(Path(__file__).resolve().parent.parent)
if _TESTS_DIR not in sys.path:
    sys.path.append(_TESTS_DIR)


@pytest.fixture(scope="session")
def flite() -> FliteTTS:
    return FliteTTS()


@pytest.fixture(scope="session")
def speech(flite: FliteTTS) -> SpeechFactory:
    """``speech(text)``: 16 kHz s16le of flite's slt voice saying ``text`` (memoized)."""
    slt = next(v for v in flite.voices() if v.id == "slt")

    @cache
    def make(text: str) -> bytes:
        return flite.synthesize(text, slt).pcm

    return make


@pytest.fixture(scope="session")
def pocketsphinx() -> Iterator[PocketsphinxSTT]:
    engine = PocketsphinxSTT(min_decoders=1)
    engine.warm_up()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def silero() -> SileroVAD:
    return SileroVAD()
