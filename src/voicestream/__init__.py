"""voicestream: a latency-first, self-hosted streaming voice server."""

__version__ = "0.1.0"
__all__ = ["__version__"]
