"""Chapter markers in audio files, in each container's own way.

- MP3: ID3v2 ``CHAP`` frames (with a ``CTOC``), written by libavformat's mp3 muxer from the
  container's chapters; Ogg Opus: the Vorbis comment chapter tags (``CHAPTER001=…``), written
  by its ogg muxer. Both read back as chapters by libavformat (and podcast players).
- FLAC: libavformat's muxer writes no chapters, so the same Vorbis comment tags go in as plain
  metadata (``vorbis_chapter_tags``); its demuxer, like players, reads them back as chapters.
- WAV: a ``cue `` chunk with one cue point per chapter and a ``LIST``/``adtl`` chunk with a
  ``labl`` (its title) for each (``wav_chapter_chunks``), after the ``data`` chunk, where
  audio editors look for them.
- Raw PCM, G.711 and AAC in ADTS have nowhere to put them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from voicestream.media.wav import WAV_HEADER_SIZE, wav_header

if TYPE_CHECKING:
    from av.container.core import Chapter

__all__ = [
    "ChapterMark",
    "av_chapters",
    "read_wav_chapters",
    "vorbis_chapter_tags",
    "wav_chapter_chunks",
    "wav_file_head",
]

_MILLIS = Fraction(1, 1000)


@dataclass(frozen=True, slots=True)
class ChapterMark:
    """A chapter from ``start`` to ``end`` seconds into the audio."""

    title: str
    start: float
    end: float


def av_chapters(marks: Sequence[ChapterMark]) -> list[Chapter]:
    """The chapters as PyAV's ``OutputContainer.set_chapters`` takes them (milliseconds)."""
    return [
        {
            "id": index,
            "start": round(mark.start * 1000),
            "end": max(round(mark.start * 1000), round(mark.end * 1000)),
            "time_base": _MILLIS,
            "metadata": {"title": mark.title},
        }
        for index, mark in enumerate(marks, start=1)
    ]


def _clock(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def vorbis_chapter_tags(marks: Sequence[ChapterMark]) -> dict[str, str]:
    """The Vorbis comment chapter extension: ``CHAPTERnnn`` (start) and ``CHAPTERnnnNAME``."""
    tags: dict[str, str] = {}
    for index, mark in enumerate(marks, start=1):
        tags[f"CHAPTER{index:03d}"] = _clock(mark.start)
        tags[f"CHAPTER{index:03d}NAME"] = mark.title
    return tags


def _chunk(chunk_id: bytes, body: bytes) -> bytes:
    # RIFF chunks are word-aligned: an odd-sized body is followed by one pad byte.
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def wav_chapter_chunks(marks: Sequence[ChapterMark], sample_rate: int) -> bytes:
    """``cue `` and ``LIST``/``adtl`` chunks for the chapters; ``b""`` for none."""
    if not marks:
        return b""
    points = b"".join(
        # id, position, fcc of the chunk holding the samples, chunk start, block start, offset
        struct.pack("<II4sIII", index, 0, b"data", 0, 0, round(mark.start * sample_rate))
        for index, mark in enumerate(marks, start=1)
    )
    cue = _chunk(b"cue ", struct.pack("<I", len(marks)) + points)
    labels = b"".join(
        _chunk(b"labl", struct.pack("<I", index) + mark.title.encode("utf-8") + b"\x00")
        for index, mark in enumerate(marks, start=1)
    )
    return cue + _chunk(b"LIST", b"adtl" + labels)


def wav_file_head(sample_rate: int, num_samples: int, trailer_bytes: int) -> bytes:
    """The 44-byte header of a mono s16le WAV whose ``data`` chunk is followed by
    ``trailer_bytes`` of further chunks (the RIFF size counts them)."""
    head = bytearray(wav_header(sample_rate, num_samples))
    struct.pack_into("<I", head, 4, WAV_HEADER_SIZE - 8 + num_samples * 2 + trailer_bytes)
    return bytes(head)


def _riff_chunks(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, bytes]]:
    pos = start
    while pos + 8 <= end:
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        yield chunk_id, data[pos + 8 : min(end, pos + 8 + size)]
        pos += 8 + size + size % 2


def read_wav_chapters(data: bytes) -> list[tuple[str, float]]:
    """``(title, start seconds)`` of the cue points of a mono s16le WAV, in position order."""
    rate = struct.unpack_from("<I", data, 24)[0]  # fmt is the first chunk in files we write
    positions: dict[int, int] = {}
    titles: dict[int, str] = {}
    for chunk_id, body in _riff_chunks(data, 12, len(data)):
        if chunk_id == b"cue ":
            (count,) = struct.unpack_from("<I", body, 0)
            for i in range(count):
                cue_id, _, _, _, _, offset = struct.unpack_from("<II4sIII", body, 4 + 24 * i)
                positions[cue_id] = offset
        elif chunk_id == b"LIST" and body[:4] == b"adtl":
            for sub_id, sub in _riff_chunks(body, 4, len(body)):
                if sub_id == b"labl":
                    titles[struct.unpack_from("<I", sub, 0)[0]] = sub[4:].split(b"\x00")[0].decode()
    order = sorted(positions, key=positions.__getitem__)
    return [(titles.get(cue_id, ""), positions[cue_id] / rate) for cue_id in order]
