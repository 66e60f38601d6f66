"""Windows of bounded length over a long recording, cut where it is quiet."""

from __future__ import annotations

import itertools

import pytest

from voicestream.media.pauses import windows_at_pauses
from voicestream.media.signal import sine

RATE = 16000


def test_short_recording_is_one_window() -> None:
    pcm = sine(200, 3.0, RATE)
    assert windows_at_pauses(pcm, RATE, max_seconds=30) == [(0, 3 * RATE)]
    assert windows_at_pauses(b"", RATE, max_seconds=30) == []


def test_long_recording_is_cut_in_its_pauses() -> None:
    # 4 s of tone, 0.5 s of silence, again and again: 76.5 s in all.
    tone, gap = sine(200, 4.0, RATE), b"\x00\x00" * (RATE // 2)
    pcm = (tone + gap) * 17
    windows = windows_at_pauses(pcm, RATE, max_seconds=30)
    assert len(windows) == 3
    assert windows[0][0] == 0 and windows[-1][1] == len(pcm) // 2
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end == start  # contiguous: nothing lost, nothing twice
    period = 4.5 * RATE
    for start, end in windows:
        assert 0 < end - start <= 30 * RATE
        if end < len(pcm) // 2:  # the last window is whatever is left
            assert end - start >= 25 * RATE, "cut late in the window, not early"
            into = end % period  # 0 is the silence's last sample: the next tone starts there
            assert into == 0 or into >= 4 * RATE, f"cut at {end / RATE:.2f} s is inside a tone"


def test_no_pause_still_bounds_the_windows() -> None:
    pcm = sine(200, 65.0, RATE)
    windows = windows_at_pauses(pcm, RATE, max_seconds=30)
    assert sum(end - start for start, end in windows) == 65 * RATE
    assert all(end - start <= 30 * RATE for start, end in windows)


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        windows_at_pauses(b"\x00\x00", RATE, max_seconds=0)
