"""Output audio formats, named the ElevenLabs way: ``codec_samplerate[_bitrate_kbps]``; and the
bounds any client audio must stay within before it is decoded."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from voicestream.errors import InvalidAudio, UnsupportedFormat

__all__ = [
    "MAX_SOURCE_CHANNELS",
    "MAX_SOURCE_RATE",
    "MIN_SOURCE_RATE",
    "PCM_RATES",
    "SUPPORTED_FORMATS",
    "AudioFormat",
    "Codec",
    "check_source_audio",
    "parse_format",
]


class Codec(enum.StrEnum):
    PCM = "pcm"
    ULAW = "ulaw"
    ALAW = "alaw"
    MP3 = "mp3"
    OPUS = "opus"
    AAC = "aac"
    FLAC = "flac"
    WAV = "wav"


PCM_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 32000, 44100, 48000)

SUPPORTED_FORMATS: tuple[str, ...] = (
    *(f"pcm_{rate}" for rate in PCM_RATES),
    "ulaw_8000",
    "alaw_8000",
    "mp3_22050_32",
    "mp3_24000_48",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
    *(f"wav_{rate}" for rate in PCM_RATES),
    "aac_44100_128",
    "aac_48000_128",
    "flac_16000",
    "flac_22050",
    "flac_24000",
    "flac_44100",
    "flac_48000",
)

_CONTENT_TYPES: dict[Codec, str] = {
    Codec.PCM: "audio/pcm",
    Codec.ULAW: "audio/basic",
    Codec.ALAW: "audio/x-alaw-basic",
    Codec.MP3: "audio/mpeg",
    Codec.OPUS: "audio/ogg",  # Opus always travels in an Ogg container here
    Codec.AAC: "audio/aac",  # ADTS stream
    Codec.FLAC: "audio/flac",
    Codec.WAV: "audio/wav",
}

_RAW_CODECS = frozenset({Codec.PCM, Codec.ULAW, Codec.ALAW})


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """One supported output format; ``bitrate`` is in bits per second."""

    name: str
    codec: Codec
    sample_rate: int
    bitrate: int | None = None

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.codec]

    @property
    def extension(self) -> str:
        """The file name extension for this format's files ("mp3", "ogg", ...)."""
        return "ogg" if self.codec is Codec.OPUS else self.codec.value

    @property
    def is_raw(self) -> bool:
        """Headerless sample streams: any byte run of whole samples is valid on its own."""
        return self.codec in _RAW_CODECS

    @property
    def bytes_per_sample(self) -> int:
        """Bytes per mono sample of the sample stream (WAV's payload is s16le too)."""
        if self.codec in (Codec.PCM, Codec.WAV):
            return 2
        if self.codec in (Codec.ULAW, Codec.ALAW):
            return 1
        raise ValueError(f"{self.name} is compressed and has no fixed bytes per sample")


def _build(name: str) -> AudioFormat:
    codec, rate, *kbps = name.split("_")
    return AudioFormat(
        name=name,
        codec=Codec(codec),
        sample_rate=int(rate),
        bitrate=int(kbps[0]) * 1000 if kbps else None,
    )


# Built once: parsing is a dict lookup, and only names we actually serve can exist.
_FORMATS: dict[str, AudioFormat] = {name: _build(name) for name in SUPPORTED_FORMATS}


def parse_format(name: str) -> AudioFormat:
    """The format called ``name`` (e.g. ``mp3_44100_128``); UnsupportedFormat otherwise."""
    try:
        return _FORMATS[name]
    except (KeyError, TypeError):
        raise UnsupportedFormat(
            f"unsupported output format {name!r}; supported: {', '.join(SUPPORTED_FORMATS)}",
            details={"format": str(name), "supported": list(SUPPORTED_FORMATS)},
        ) from None


# What uploaded audio may declare. Decoding cost follows the declared rate, not the upload's size:
# a 28 KB WAV that claims 1 Hz holds hours of "audio" and grows 16000-fold when resampled to
# 16 kHz. No real recording sits outside these bounds; the top is also the resampler's limit.
MIN_SOURCE_RATE = 1000
MAX_SOURCE_RATE = 192_000
MAX_SOURCE_CHANNELS = 8


def check_source_audio(sample_rate: int, channels: int) -> None:
    """InvalidAudio unless a client's audio declares a rate and channel count we will decode."""
    if not MIN_SOURCE_RATE <= sample_rate <= MAX_SOURCE_RATE:
        raise InvalidAudio(
            f"unsupported sample rate {sample_rate} Hz; audio must be "
            f"{MIN_SOURCE_RATE}..{MAX_SOURCE_RATE} Hz",
            details={"sample_rate": sample_rate},
        )
    if not 1 <= channels <= MAX_SOURCE_CHANNELS:
        raise InvalidAudio(
            f"unsupported channel count {channels}; audio must have 1..{MAX_SOURCE_CHANNELS}",
            details={"channels": channels},
        )
