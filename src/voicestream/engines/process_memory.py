"""This process's resident memory, for "what did loading that model cost" figures."""

from __future__ import annotations

import os

__all__ = ["resident_bytes"]


def resident_bytes() -> int:
    """Resident set size in bytes (Linux ``/proc``); 0 where unknown (the figures built on it
    are differences around a load, approximate anyway)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
