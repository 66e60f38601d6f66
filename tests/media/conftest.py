"""Fixtures shared by the media tests."""

from __future__ import annotations

import pytest

from ._signals import tone_and_chirp


@pytest.fixture(scope="session")
def source_24k() -> bytes:
    # 24 kHz is what the TTS engines produce, so it is what the encoders mostly see.
    return tone_and_chirp(24000)
