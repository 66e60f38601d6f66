"""The server's signing secret, when none is configured: one random key per data dir."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

__all__ = ["load_or_create_secret"]


def load_or_create_secret(data_dir: Path) -> str:
    """Blocking. Read ``<data_dir>/secret_key``, creating it (0600) on first use.

    The key is written to a temporary file and hard-linked into place, which fails if the file
    exists: when several processes start at once the first wins, and nobody reads a half-written
    key.
    """
    path = data_dir / "secret_key"
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".secret_key.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} is damaged; delete it to make a new one")
    return key
