"""Engines: TTS, STT and VAD contracts, the inference executors and the embedded implementations.

Engines never import ``server``, ``rest`` or ``transports``. Their blocking methods run on a
dedicated executor (``engines.executor``), never on the event loop.
"""
