from __future__ import annotations

import numpy as np
import pytest

from voicestream.media.mixing import Clip, Track, mix, mix_all
from voicestream.media.signal import pcm_to_float, rms_dbfs, sine

RATE = 16000


def region(pcm: bytes, start: float, end: float) -> bytes:
    return pcm[round(start * RATE) * 2 : round(end * RATE) * 2]


def level(pcm: bytes, start: float, end: float) -> float:
    return rms_dbfs(region(pcm, start, end))


def test_clips_sum_at_their_offsets_with_their_gains() -> None:
    # A 0.25-amplitude sine is -15.05 dBFS RMS; two of them in phase add 6 dB.
    tone = sine(500, 1.0, RATE, amplitude=0.25)
    tracks = [
        Track([Clip(tone, 0.5)]),
        Track([Clip(tone, 1.0, gain_db=-6.0)], kind="effects", gain_db=-3.0),
    ]
    out = mix_all(tracks, RATE)
    assert len(out) == 2.0 * RATE * 2  # up to the last clip's end
    assert level(out, 0.0, 0.5) == -np.inf
    assert level(out, 0.55, 0.95) == pytest.approx(-15.05, abs=0.1)
    # Both in phase: amplitude 0.25 * (1 + 10^(-9/20)) ≈ 0.339.
    assert level(out, 1.05, 1.45) == pytest.approx(20 * np.log10(0.339 / np.sqrt(2)), abs=0.1)
    assert level(out, 1.55, 1.95) == pytest.approx(-15.05 - 9.0, abs=0.1)


def test_duration_pads_with_silence_or_cuts() -> None:
    tracks = [Track([Clip(sine(500, 1.0, RATE), 0.0)])]
    assert len(mix_all(tracks, RATE, duration=1.5)) == 1.5 * RATE * 2
    assert level(mix_all(tracks, RATE, duration=1.5), 1.0, 1.5) == -np.inf
    assert len(mix_all(tracks, RATE, duration=0.25)) == 0.25 * RATE * 2
    assert mix_all([], RATE) == b""
    assert mix_all([Track([])], RATE, duration=0.5) == bytes(RATE)


def test_fades_are_linear_ramps() -> None:
    # A constant (DC) clip makes the ramp's shape readable sample by sample.
    dc = np.full(RATE, 0.5 * 32768, dtype="<i2").tobytes()
    out = pcm_to_float(mix_all([Track([Clip(dc, 0.0, fade_in=0.25, fade_out=0.5)])], RATE))
    ramp_in = out[: RATE // 4]
    assert ramp_in[0] == 0.0
    assert np.allclose(np.diff(ramp_in), 0.5 / (RATE / 4), atol=2e-4)
    assert np.allclose(out[RATE // 4 : RATE // 2], 0.5, atol=1e-4)
    ramp_out = out[RATE // 2 :]
    assert np.allclose(np.diff(ramp_out), -0.5 / (RATE / 2), atol=2e-4)
    assert abs(ramp_out[-1]) < 1e-3
    # Half-way through each fade the level is half the amplitude.
    assert out[RATE // 8] == pytest.approx(0.25, abs=1e-3)
    assert out[RATE * 3 // 4] == pytest.approx(0.25, abs=1e-3)


def test_music_ducks_under_speech_and_comes_back_after_the_release() -> None:
    music = Track([Clip(sine(220, 4.0, RATE, amplitude=0.2), 0.0)], kind="music", duck_db=-12.0)
    voice = Track([Clip(sine(1000, 1.0, RATE, amplitude=0.3), 1.5)])
    speech_free = mix_all([music], RATE)
    ducked = mix_all([music, voice], RATE)
    # Only the music is left where the voice is silent; under the voice, take the voice away
    # (same samples, summed without any limiting at these levels) to measure the music.
    voice_alone = pcm_to_float(mix_all([voice], RATE, duration=4.0))
    music_under = pcm_to_float(ducked) - voice_alone
    before = level(speech_free, 0.2, 1.4)
    assert level(ducked, 0.2, 1.4) == pytest.approx(before, abs=0.05)
    # After the 50 ms attack the music sits duck_db lower for the rest of the speech.
    start, end = round(1.6 * RATE), round(2.5 * RATE)
    under = 20 * np.log10(np.sqrt(np.mean(np.square(music_under[start:end], dtype=np.float64))))
    assert under == pytest.approx(before - 12.0, abs=0.5)
    # Back to full level once the hold and the 300 ms release have passed.
    assert level(ducked, 3.1, 4.0) == pytest.approx(before, abs=0.05)
    # The ramps are gradual: no sample-to-sample jump bigger than the music's own slope allows.
    music_steps = np.abs(np.diff(music_under[round(1.4 * RATE) : round(3.1 * RATE)]))
    assert music_steps.max() < 0.2 * 2 * np.pi * 220 / RATE * 1.05


def test_a_voice_track_is_never_ducked_and_quiet_voices_do_not_duck() -> None:
    voice = Track([Clip(sine(300, 1.0, RATE, amplitude=0.3), 0.0)], duck_db=-20.0)
    assert mix_all([voice], RATE) == sine(300, 1.0, RATE, amplitude=0.3)
    music = Track([Clip(sine(220, 1.0, RATE, amplitude=0.2), 0.0)], kind="music", duck_db=-12.0)
    # -60 dBFS is below the speech threshold: room tone, not speech.
    whisper = Track([Clip(sine(1000, 1.0, RATE, amplitude=0.001), 0.0)])
    both = pcm_to_float(mix_all([music, whisper], RATE))
    alone = pcm_to_float(mix_all([music], RATE)) + pcm_to_float(mix_all([whisper], RATE))
    assert np.allclose(both, alone, atol=2 / 32768)


def test_loud_overlaps_are_limited_never_clipped_or_wrapped() -> None:
    loud = [
        Track([Clip(sine(440, 1.0, RATE, amplitude=0.9), 0.0)]),
        Track([Clip(sine(440, 1.0, RATE, amplitude=0.9), 0.0)], kind="music", gain_db=6.0),
    ]
    out = np.frombuffer(mix_all(loud, RATE), dtype="<i2").astype(np.int32)
    assert out.max() < 32767
    assert out.min() > -32768
    # No wrap-around: the output keeps the sign of the input wave everywhere.
    reference = np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)
    strong = np.abs(reference) > 0.05
    assert np.all(np.sign(out[strong]) == np.sign(reference[strong]))
    # The peaks are bent down smoothly: they sit near full scale.
    assert out.max() > 0.95 * 32767
    # Levels below the limiter's knee pass untouched.
    quiet = sine(440, 0.5, RATE, amplitude=0.8)
    assert mix_all([Track([Clip(quiet, 0.0)])], RATE) == quiet


def test_blocks_join_to_the_whole_mix_and_a_straddling_clip_is_continuous() -> None:
    tracks = [
        Track([Clip(sine(700, 1.3, RATE, amplitude=0.3), 0.37, fade_in=0.1, fade_out=0.2)]),
        Track([Clip(sine(300, 0.4, RATE, amplitude=0.3), 1.9)], gain_db=-2.0),
        Track(
            [Clip(sine(220, 2.5, RATE, amplitude=0.5), 0.0, fade_out=0.3)],
            kind="music",
            duck_db=-9.0,
        ),
    ]
    whole = mix_all(tracks, RATE)
    # Block sizes that are not multiples of the 10 ms ducking frame, nor of each other.
    for block_seconds in (0.0137, 0.25, 1.0):
        blocks = list(mix(tracks, RATE, block_seconds=block_seconds))
        assert all(len(b) == round(block_seconds * RATE) * 2 for b in blocks[:-1])
        assert b"".join(blocks) == whole
    # A clip crossing the 1.0 s boundary of 1 s blocks comes out sample for sample.
    clip = sine(700, 1.3, RATE, amplitude=0.3)
    blocks = list(mix([Track([Clip(clip, 0.37)])], RATE, block_seconds=1.0))
    assert len(blocks) == 2
    assert b"".join(blocks)[round(0.37 * RATE) * 2 :] == clip


def test_bad_arguments_are_refused() -> None:
    tone = sine(500, 0.1, RATE)
    with pytest.raises(ValueError, match="start"):
        list(mix([Track([Clip(tone, -1.0)])], RATE))
    with pytest.raises(ValueError, match="even"):
        list(mix([Track([Clip(tone[:-1], 0.0)])], RATE))
    with pytest.raises(ValueError, match="duck_db"):
        list(mix([Track([Clip(tone, 0.0)], kind="music", duck_db=3.0)], RATE))
    with pytest.raises(ValueError, match="rate"):
        list(mix([], 0))
    with pytest.raises(ValueError, match="block_seconds"):
        list(mix([], RATE, block_seconds=0))
