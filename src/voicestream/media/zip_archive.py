"""Several files in one zip archive, as the download routes hand them out (a history export,
a Studio snapshot's chapters)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable

__all__ = ["stored_zip"]


def stored_zip(files: Iterable[tuple[str, bytes]]) -> bytes:
    """Blocking. ``(name, data)`` pairs in one archive, stored rather than deflated: the audio
    it carries (MP3, WAV, Opus) gains next to nothing from deflate and costs CPU."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buf.getvalue()
