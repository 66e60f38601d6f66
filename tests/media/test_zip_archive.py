"""The one zip helper both download routes (history, Studio snapshots) use."""

from __future__ import annotations

import io
import zipfile

from voicestream.media.zip_archive import stored_zip


def test_the_files_come_back_in_order_stored_not_deflated() -> None:
    files = [("001 first.mp3", b"\xff\xfb" + bytes(5000)), ("b.wav", b"RIFF" + b"x" * 100)]
    with zipfile.ZipFile(io.BytesIO(stored_zip(files))) as archive:
        assert [(i.filename, i.compress_type) for i in archive.infolist()] == [
            ("001 first.mp3", zipfile.ZIP_STORED),
            ("b.wav", zipfile.ZIP_STORED),
        ]
        assert [(name, archive.read(name)) for name in archive.namelist()] == files


def test_no_files_is_an_empty_archive() -> None:
    with zipfile.ZipFile(io.BytesIO(stored_zip([]))) as archive:
        assert archive.namelist() == []
