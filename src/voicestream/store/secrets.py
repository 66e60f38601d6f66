"""The server's secret: one random key per data dir when none is configured, and the
encryption of third-party secrets (agents' LLM API keys) stored in the database under it.

Stored secrets are AES-256-GCM sealed with a key derived (HKDF-SHA256) from the server's
secret, so a database dump or backup alone does not hold them. A sealed value is
``enc:v2:`` + base64url(nonce ‖ ciphertext ‖ tag), its associated data naming the exact
place it belongs to (``workspace:agent:field``), so it opens nowhere else — not in another
tenant's row, nor in another agent of the same workspace. ``enc:v1:`` values were bound to the
workspace alone: they still open (``legacy_context``) and are resealed as v2 at start-up. A
value without a prefix is plaintext from before sealing: it still reads, and is sealed at
start-up too (``SecretBox.is_current``).
"""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SecretBox", "SecretUnreadable", "load_or_create_secret"]

_SEALED_PREFIX: Final = "enc:v2:"
_V1_PREFIX: Final = "enc:v1:"
_NONCE_BYTES: Final = 12
# Domain separation: the same server secret also signs tickets; this key is for nothing else.
_HKDF_INFO: Final = b"voicestream stored third-party secrets v1"


class SecretUnreadable(Exception):
    """A sealed value that this server's secret cannot open (the secret changed, or the value
    was tampered with or moved to another workspace's row)."""


class SecretBox:
    """Seals and opens stored secrets; ``context`` (workspace, row and field) binds a sealed
    value to the place it belongs to, so it cannot be copied into any other."""

    CURRENT_PREFIX: Final = _SEALED_PREFIX

    def __init__(self, server_secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            server_secret.encode()
        )
        self._aead = AESGCM(key)

    @staticmethod
    def is_sealed(stored: str) -> bool:
        return stored.startswith((_SEALED_PREFIX, _V1_PREFIX))

    @staticmethod
    def is_current(stored: str) -> bool:
        """Sealed the way ``seal`` seals now: nothing to upgrade."""
        return stored.startswith(_SEALED_PREFIX)

    def seal(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return _SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, *, context: str, legacy_context: str | None = None) -> str:
        """The plaintext of a sealed value; an unsealed (legacy) value is returned as it is.

        ``legacy_context`` is what a v1 value was bound to (the workspace id); without it a
        v1 value is opened with ``context``.

        Raises:
            SecretUnreadable: the value does not open with this server's secret.
        """
        if stored.startswith(_SEALED_PREFIX):
            body, bound_to = stored[len(_SEALED_PREFIX) :], context
        elif stored.startswith(_V1_PREFIX):
            body, bound_to = stored[len(_V1_PREFIX) :], legacy_context or context
        else:
            return stored
        try:
            raw = base64.urlsafe_b64decode(body)
            opened = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], bound_to.encode())
        except (ValueError, InvalidTag):
            raise SecretUnreadable(
                "the stored secret does not open with this server's secret"
            ) from None
        return opened.decode()


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
