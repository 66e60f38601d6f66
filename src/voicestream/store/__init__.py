"""Persistence: PostgreSQL (keys, workspaces, usage), Redis, and the embedded fallbacks for both.

Submodules are imported directly (``voicestream.store.keys`` ...) so that importing this package
stays cheap and free of side effects; ``voicestream.store.services.open_services`` is the one
entry point the server and the CLI share.
"""

from __future__ import annotations

__all__: list[str] = []
