"""The built-in job types, registered on import (``jobs.registry.load_job_types``)."""

from __future__ import annotations

from ..registry import register
from .billing_reconcile import BillingReconcileJob
from .data_deletion import DataDeletionJob
from .data_export import DataExportJob
from .dubbing import DubbingJob
from .export import ExportJob
from .retention import RetentionJob
from .studio_convert import StudioConvertJob
from .transcription import TranscriptionJob
from .tts import TTSJob

__all__ = [
    "BillingReconcileJob",
    "DataDeletionJob",
    "DataExportJob",
    "DubbingJob",
    "ExportJob",
    "RetentionJob",
    "StudioConvertJob",
    "TTSJob",
    "TranscriptionJob",
]

register(TTSJob())
register(TranscriptionJob())
register(ExportJob())
register(StudioConvertJob())
register(DubbingJob())
register(BillingReconcileJob())
register(RetentionJob())
register(DataExportJob())
register(DataDeletionJob())
