"""The built-in job types, registered on import (``jobs.registry.load_job_types``)."""

from __future__ import annotations

from ..registry import register
from .transcription import TranscriptionJob
from .tts import TTSJob

__all__ = ["TTSJob", "TranscriptionJob"]

register(TTSJob())
register(TranscriptionJob())
