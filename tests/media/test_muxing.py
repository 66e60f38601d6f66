from __future__ import annotations

import random
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from voicestream.errors import InvalidAudio
from voicestream.media.muxing import MediaInfo, MuxAudio, mux_under_video, probe, video_packets
from voicestream.media.signal import pcm_to_float, rms_dbfs, sine
from voicestream.media.wav import encode_wav

RATE = 16000
VIDEO_CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def make_video(
    path: Path, seconds: float, *, audio: bytes | None, container_format: str = "mp4"
) -> Path:
    """A 64x64 @ 10 fps video of changing grey, with ``audio`` (mono s16le at RATE) as AAC."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(VIDEO_CODEC, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        sound = container.add_stream("aac", rate=RATE, layout="mono") if audio else None
        for i in range(round(seconds * 10)):
            shade = np.full((64, 64, 3), (i * 9) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(shade, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None and audio:
            samples = np.frombuffer(audio, dtype="<i2").reshape(1, -1)
            block = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            block.sample_rate, block.pts, block.time_base = RATE, 0, Fraction(1, RATE)
            container.mux(sound.encode(block))
            container.mux(sound.encode(None))
    return path


def decoded_audio(path: Path, index: int) -> tuple[bytes, int]:
    """The ``index``-th audio stream of ``path`` as mono s16le, with its rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=stream.rate)
        chunks = [
            bytes(out.planes[0])[: out.samples * 2]
            for frame in container.decode(stream)
            for out in resampler.resample(frame)
        ]
        return b"".join(chunks), stream.rate


def test_probe_reads_video_audio_and_video_only_files(tmp_path: Path) -> None:
    both = make_video(tmp_path / "both.mp4", 2.0, audio=sine(440, 2.0, RATE))
    info = probe(both)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    codec = "h264" if VIDEO_CODEC == "libx264" else "mpeg4"
    assert replace(info, duration=2.0) == MediaInfo(2.0, True, True, codec, 64, 64)
    silent = probe(make_video(tmp_path / "silent.mp4", 1.0, audio=None))
    assert (silent.has_audio, silent.has_video, silent.width) == (False, True, 64)
    assert silent.duration == pytest.approx(1.0, abs=0.1)
    wav = tmp_path / "tone.wav"
    wav.write_bytes(encode_wav(sine(440, 1.5, RATE), RATE))
    assert probe(wav) == MediaInfo(1.5, True, False, None, None, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is plainly not media\n" * 40, "not audio or video"),
        (random.Random(7).randbytes(8192), "not audio or video"),
        (b"", "not audio or video"),
    ],
    ids=["text", "random", "empty"],
)
def test_probe_refuses_what_is_not_media(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    with pytest.raises(InvalidAudio, match=message) as caught:
        probe(path)
    assert caught.value.code == "invalid_audio"


def test_mux_copies_the_video_and_adds_one_aac_track_per_language(tmp_path: Path) -> None:
    source = make_video(tmp_path / "source.mp4", 3.0, audio=sine(440, 3.0, RATE))
    out = tmp_path / "dubbed.mp4"
    dubbed = sine(330, 2.5, 24000, amplitude=0.4)  # TTS rate; resampled for AAC
    original = sine(660, 3.0, 22050, amplitude=0.2)
    mux_under_video(
        source,
        [
            MuxAudio(dubbed, 24000, language="es", title="Spanish dub"),
            MuxAudio(original, 22050, language="eng", title="Original"),
        ],
        out,
    )
    assert video_packets(out) == video_packets(source)
    with av.open(str(source)) as src, av.open(str(out)) as muxed:
        assert [s.type for s in muxed.streams] == ["video", "audio", "audio"]
        in_video, out_video = src.streams.video[0], muxed.streams.video[0]
        times = [
            [(p.pts * p.time_base, p.dts * p.time_base) for p in c.demux(s) if p.size]
            for c, s in ((src, in_video), (muxed, out_video))
        ]
        assert times[0] == times[1]
        first, second = muxed.streams.audio
        assert first.codec_context.name == second.codec_context.name == "aac"
        assert (first.metadata["language"], second.metadata["language"]) == ("spa", "eng")
        assert first.metadata["handler_name"] == "Spanish dub"
        assert first.disposition & av.stream.Disposition.default
        assert not second.disposition & av.stream.Disposition.default
        assert float(first.duration * first.time_base) == pytest.approx(2.5, abs=0.06)
        assert float(second.duration * second.time_base) == pytest.approx(3.0, abs=0.06)
    # The audio decodes back to the tones that went in, at their levels.
    for index, (freq, seconds, level) in enumerate(((330, 2.5, 0.4), (660, 3.0, 0.2))):
        back, rate = decoded_audio(out, index)
        assert len(back) / 2 / rate == pytest.approx(seconds, abs=0.06)
        middle = back[rate // 2 * 2 : rate * 2 * 2]
        assert rms_dbfs(middle) == pytest.approx(20 * np.log10(level / np.sqrt(2)), abs=0.5)
        spectrum = np.abs(np.fft.rfft(pcm_to_float(middle)))
        peak = np.fft.rfftfreq(len(middle) // 2, 1 / rate)[spectrum.argmax()]
        assert peak == pytest.approx(freq, abs=3)
    assert probe(out).duration == pytest.approx(3.0, abs=0.1)


def presentation_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(f.pts * f.time_base for f in container.decode(stream))


def test_mux_copies_video_from_matroska_whose_first_packets_have_no_dts(tmp_path: Path) -> None:
    source = make_video(tmp_path / "source.mkv", 2.0, audio=None, container_format="matroska")
    out = tmp_path / "out.mp4"
    mux_under_video(source, [MuxAudio(sine(440, 2.0, RATE), RATE, language="de")], out)
    assert video_packets(out) == video_packets(source)
    # Every frame decodes, shown at the same times as in the source.
    assert presentation_times(out) == presentation_times(source)
    assert len(presentation_times(out)) == 20


def test_mux_refuses_a_file_without_video(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    wav.write_bytes(encode_wav(sine(440, 1.0, RATE), RATE))
    with pytest.raises(InvalidAudio, match="no video stream"):
        mux_under_video(wav, [MuxAudio(sine(440, 1.0, RATE), RATE)], tmp_path / "out.mp4")
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 50)
    with pytest.raises(InvalidAudio, match="not audio or video"):
        mux_under_video(text, [], tmp_path / "out.mp4")
    with pytest.raises(InvalidAudio, match="no video stream"):
        video_packets(wav)


@pytest.mark.skipif("flv" not in av.codecs_available, reason="needs FFmpeg's flv encoder")
def test_mux_refuses_video_mp4_cannot_hold_and_leaves_no_file(tmp_path: Path) -> None:
    source = tmp_path / "old.flv"
    with av.open(str(source), "w", format="flv") as container:
        stream = container.add_stream("flv", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    out = tmp_path / "out.mp4"
    out.write_bytes(b"stale output of an earlier attempt")
    with pytest.raises(InvalidAudio, match=r"codec \(flv\) cannot be stored in MP4"):
        mux_under_video(source, [MuxAudio(sine(440, 0.5, RATE), RATE, language="en")], out)
    assert not out.exists()


def test_cover_art_is_not_video(tmp_path: Path) -> None:
    song = tmp_path / "song.mp3"
    with av.open(str(song), "w", format="mp3") as container:
        sound = container.add_stream("libmp3lame", rate=RATE, layout="mono")
        cover = container.add_stream("png")
        cover.width, cover.height, cover.pix_fmt = 16, 16, "rgb24"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        picture.pts = 0
        container.mux(cover.encode(picture))
        container.mux(cover.encode(None))
        samples = np.frombuffer(sine(440, 1.0, RATE), dtype="<i2").reshape(1, -1)
        block = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        block.sample_rate, block.pts = RATE, 0
        container.mux(sound.encode(block))
        container.mux(sound.encode(None))
    with av.open(str(song)) as check:
        assert [s.type for s in check.streams] == ["audio", "video"]  # the cover is there
    info = probe(song)
    assert (info.has_audio, info.has_video, info.video_codec) == (True, False, None)
    assert info.duration == pytest.approx(1.0, abs=0.1)
    with pytest.raises(InvalidAudio, match="no video stream"):
        mux_under_video(song, [], tmp_path / "out.mp4")
