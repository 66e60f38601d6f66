from __future__ import annotations

import pytest

from voicestream.errors import UnsupportedFormat
from voicestream.media.formats import (
    PCM_RATES,
    SUPPORTED_FORMATS,
    AudioFormat,
    Codec,
    parse_format,
)


@pytest.mark.parametrize("name", SUPPORTED_FORMATS)
def test_every_supported_name_parses_back_to_itself(name: str) -> None:
    fmt = parse_format(name)
    codec, rate, *kbps = name.split("_")
    assert fmt.name == name
    assert fmt.codec == Codec(codec)
    assert fmt.sample_rate == int(rate)
    assert fmt.bitrate == (int(kbps[0]) * 1000 if kbps else None)


def test_parsed_fields() -> None:
    assert parse_format("mp3_44100_128") == AudioFormat("mp3_44100_128", Codec.MP3, 44100, 128000)
    assert parse_format("opus_48000_32").bitrate == 32000
    assert parse_format("pcm_22050") == AudioFormat("pcm_22050", Codec.PCM, 22050, None)


def test_pcm_and_wav_exist_at_every_pcm_rate() -> None:
    for rate in PCM_RATES:
        assert f"pcm_{rate}" in SUPPORTED_FORMATS
        assert f"wav_{rate}" in SUPPORTED_FORMATS
    assert len(set(SUPPORTED_FORMATS)) == len(SUPPORTED_FORMATS)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("pcm_16000", "audio/pcm"),
        ("ulaw_8000", "audio/basic"),
        ("alaw_8000", "audio/x-alaw-basic"),
        ("mp3_44100_128", "audio/mpeg"),
        ("opus_48000_64", "audio/ogg"),
        ("aac_44100_128", "audio/aac"),
        ("flac_44100", "audio/flac"),
        ("wav_24000", "audio/wav"),
    ],
)
def test_content_type(name: str, content_type: str) -> None:
    assert parse_format(name).content_type == content_type


def test_raw_formats_and_sample_sizes() -> None:
    assert parse_format("pcm_8000").is_raw
    assert parse_format("ulaw_8000").is_raw
    assert parse_format("alaw_8000").is_raw
    assert not parse_format("wav_8000").is_raw
    assert not parse_format("mp3_44100_128").is_raw
    assert parse_format("pcm_48000").bytes_per_sample == 2
    assert parse_format("ulaw_8000").bytes_per_sample == 1
    assert parse_format("alaw_8000").bytes_per_sample == 1
    with pytest.raises(ValueError, match="compressed"):
        _ = parse_format("mp3_44100_128").bytes_per_sample


@pytest.mark.parametrize(
    "name", ["mp3_1_1", "wav", "", "pcm_16001", "PCM_16000", "mp3_44100", "opus_48000_64 "]
)
def test_unknown_names_are_rejected_with_the_supported_list(name: str) -> None:
    with pytest.raises(UnsupportedFormat) as info:
        parse_format(name)
    assert info.value.code == "unsupported_format"
    assert "mp3_44100_128" in info.value.message
    assert "pcm_16000" in info.value.message
    assert info.value.details["supported"] == list(SUPPORTED_FORMATS)


def test_format_is_immutable() -> None:
    fmt = parse_format("pcm_16000")
    with pytest.raises(AttributeError):
        fmt.sample_rate = 8000  # type: ignore[misc]
