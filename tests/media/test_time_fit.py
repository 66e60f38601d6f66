from __future__ import annotations

import numpy as np
import pytest

from voicestream.media.signal import pcm_to_float, rms_dbfs, sine
from voicestream.media.time_fit import fit_to_slot, trim_silence

RATE = 16000


def silence(seconds: float) -> bytes:
    return bytes(round(seconds * RATE) * 2)


def burst(seconds: float, before: float = 0.3, after: float = 0.4) -> bytes:
    """A tone of ``seconds`` with silence around it, as TTS output has."""
    return silence(before) + sine(440, seconds, RATE, amplitude=0.3) + silence(after)


def seconds_of(pcm: bytes) -> float:
    return len(pcm) / 2 / RATE


def test_trim_silence_cuts_both_ends_and_says_how_much_from_the_front() -> None:
    trimmed, offset = trim_silence(burst(1.0, before=0.5, after=0.7), RATE)
    assert offset == pytest.approx(0.5, abs=0.01)
    assert seconds_of(trimmed) == pytest.approx(1.0, abs=0.02)
    assert rms_dbfs(trimmed) == pytest.approx(rms_dbfs(sine(440, 1.0, RATE, 0.3)), abs=0.1)
    # Quiet noise under the threshold counts as silence; a threshold below it does not.
    hiss = (np.random.default_rng(1).normal(0, 0.001, RATE // 2) * 32768).astype("<i2").tobytes()
    assert trim_silence(hiss + sine(440, 0.5, RATE), RATE)[1] == pytest.approx(0.5, abs=0.01)
    assert trim_silence(hiss + sine(440, 0.5, RATE), RATE, threshold_dbfs=-70)[1] == 0.0
    assert trim_silence(silence(1.0), RATE) == (b"", 0.0)
    assert trim_silence(b"", RATE) == (b"", 0.0)


def test_speech_shorter_than_the_slot_is_left_as_it_is() -> None:
    fitted = fit_to_slot(burst(0.8), RATE, start=2.0, end=3.0, next_start=3.5)
    assert (fitted.start, fitted.speed, fitted.truncated) == (2.0, 1.0, False)
    assert seconds_of(fitted.pcm) == pytest.approx(0.8, abs=0.02)
    assert fitted.end == pytest.approx(2.0 + seconds_of(fitted.pcm))
    assert fitted.pcm == trim_silence(burst(0.8), RATE)[0]


def test_stretch_slows_short_speech_towards_the_slot_within_min_speed() -> None:
    fitted = fit_to_slot(burst(0.9), RATE, start=0.0, end=1.0, next_start=None, stretch=True)
    assert fitted.speed == pytest.approx(0.9, abs=0.02)
    assert fitted.end == pytest.approx(1.0, abs=0.02)
    fitted = fit_to_slot(burst(0.5), RATE, start=0.0, end=1.0, next_start=None, stretch=True)
    assert fitted.speed == 0.8
    assert fitted.end == pytest.approx(0.5 / 0.8, abs=0.02)


def test_slightly_long_speech_is_sped_up_to_fit_the_slot() -> None:
    fitted = fit_to_slot(burst(1.2), RATE, start=2.0, end=3.0, next_start=4.0)
    assert fitted.speed == pytest.approx(1.2, abs=0.02)
    assert not fitted.truncated
    assert fitted.end == pytest.approx(3.0, abs=0.02)
    assert fitted.end <= 3.0
    # The tempo change keeps the pitch: still a 440 Hz tone.
    samples = pcm_to_float(fitted.pcm)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.fft.rfftfreq(samples.size, 1 / RATE)[spectrum.argmax()] == pytest.approx(440, abs=3)


def test_much_too_long_speech_spills_into_the_following_pause_at_max_speed() -> None:
    fitted = fit_to_slot(burst(1.6), RATE, start=2.0, end=3.0, next_start=4.0)
    assert fitted.speed == 1.25
    assert not fitted.truncated
    assert fitted.end == pytest.approx(2.0 + 1.6 / 1.25, abs=0.02)
    assert fitted.end > 3.0


def test_with_no_pause_after_it_speech_is_cut_with_a_fade_before_the_next_line() -> None:
    fitted = fit_to_slot(burst(1.6), RATE, start=2.0, end=3.0, next_start=3.0)
    assert fitted.speed == 1.25
    assert fitted.truncated
    assert fitted.end <= 3.0
    assert fitted.end == pytest.approx(3.0, abs=0.01)
    tail = pcm_to_float(fitted.pcm)[-round(0.03 * RATE) :]
    # The last 30 ms fade to silence instead of stopping mid-wave.
    assert np.abs(tail[-8:]).max() < 0.01
    assert np.abs(tail[:40]).max() > 0.2
    # A short pause: the spill stops 50 ms before the next line.
    fitted = fit_to_slot(burst(1.6), RATE, start=2.0, end=3.0, next_start=3.2)
    assert fitted.truncated
    assert fitted.end == pytest.approx(3.15, abs=0.01)


def test_nothing_following_lets_speech_run_on() -> None:
    fitted = fit_to_slot(burst(3.0), RATE, start=0.0, end=1.0, next_start=None)
    assert (fitted.speed, fitted.truncated) == (1.25, False)
    assert fitted.end == pytest.approx(3.0 / 1.25, abs=0.02)


def test_silence_only_gives_an_empty_fit() -> None:
    fitted = fit_to_slot(silence(1.0), RATE, start=1.0, end=2.0, next_start=2.0)
    assert (fitted.pcm, fitted.start, fitted.end, fitted.speed) == (b"", 1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("start", "end", "next_start", "speeds"),
    [(1.0, 1.0, None, (0.8, 1.25)), (-1.0, 1.0, None, (0.8, 1.25)), (1.0, 2.0, 0.5, (0.8, 1.25)),
     (0.0, 1.0, None, (1.1, 1.25)), (0.0, 1.0, None, (0.8, 0.9))],
)  # fmt: skip
def test_bad_slots_are_refused(
    start: float, end: float, next_start: float | None, speeds: tuple[float, float]
) -> None:
    with pytest.raises(ValueError):
        fit_to_slot(
            burst(0.5),
            RATE,
            start=start,
            end=end,
            next_start=next_start,
            min_speed=speeds[0],
            max_speed=speeds[1],
        )


def test_a_blip_too_short_for_the_tempo_filter_is_cut_not_lost() -> None:
    # atempo outputs nothing for a few tens of ms of input.
    fitted = fit_to_slot(sine(440, 0.03, RATE, 0.3), RATE, start=0.0, end=0.025, next_start=0.025)
    assert fitted.end == pytest.approx(0.025, abs=0.001)
    assert fitted.truncated
    assert rms_dbfs(fitted.pcm) > -20
