"""The built-in job types, registered on import (``jobs.registry.load_job_types``)."""

from __future__ import annotations

from ..registry import register
from .dubbing import DubbingJob
from .export import ExportJob
from .studio_convert import StudioConvertJob
from .transcription import TranscriptionJob
from .tts import TTSJob

__all__ = ["DubbingJob", "ExportJob", "StudioConvertJob", "TTSJob", "TranscriptionJob"]

register(TTSJob())
register(TranscriptionJob())
register(ExportJob())
register(StudioConvertJob())
register(DubbingJob())
