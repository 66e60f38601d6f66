"""The job types a server knows: one ``JobType`` per name, registered at start-up.

``jobs.types`` registers the built-in ones ("tts", "transcription"); a deployment (or a test)
adds more by naming modules in ``VOICESTREAM_JOB_TYPE_MODULES``, each of which calls
``register`` when imported (``load_job_types``). The registry is per process, and the API
server and every worker load the same modules, so a type accepted at submission is one the
workers can run.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from pydantic import BaseModel

from ..config import Settings
from ..errors import ValidationFailed

if TYPE_CHECKING:
    from .context import JobContext

__all__ = [
    "NO_FILES",
    "InputFile",
    "InputFiles",
    "JobOutcome",
    "JobType",
    "job_type",
    "known_types",
    "load_job_types",
    "register",
    "unregister",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What a finished run returns: the job's ``result`` (JSON) and the credits it used."""

    result: dict[str, Any] = field(default_factory=dict)
    credits_used: int = 0


class InputFile(Protocol):
    """What submission knows of an uploaded file a job names, for its estimate."""

    @property
    def name(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def bytes(self) -> int | None: ...


class InputFiles(Protocol):
    """The submitting workspace's files, as an estimate may look at them: cheaply, and never
    failing the submission (an unknown file is None here; the run then fails on it)."""

    async def describe(self, file_id: UUID) -> InputFile | None: ...

    async def duration(self, file_id: UUID) -> float | None:
        """Seconds of audio or video, when the container's header says (a probe of its first
        bytes, not a decode); None when it does not, or the file is not media."""
        ...

    async def read(self, file_id: UUID, max_bytes: int) -> bytes | None:
        """The whole file when it has at most ``max_bytes``, else None."""
        ...


class JobType(Protocol):
    """One kind of job. ``run`` uses its ``JobContext`` only (no HTTP), reports progress as it
    goes (each report is a cancel checkpoint), and may run more than once for one job (a retry,
    or a worker that died): every effect it has must be idempotent per job. SQL only through
    ``ctx.pool`` and the store module of the resource the job works on (a dub's plan, a
    project's version), never the job's own row: the worker owns that."""

    name: str
    input_model: type[BaseModel]  # validated at submission: 422 with the fields' details

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        """Credits to reserve at submission; ``files`` describes the files the input names
        (their size, a media file's duration), so a reservation can follow the file."""
        ...

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome: ...


class _NoFiles:
    """For a submission that comes with no file store: every estimate falls back to its
    flat figure."""

    async def describe(self, file_id: UUID) -> InputFile | None:
        return None

    async def duration(self, file_id: UUID) -> float | None:
        return None

    async def read(self, file_id: UUID, max_bytes: int) -> bytes | None:
        return None


NO_FILES: InputFiles = _NoFiles()

_TYPES: dict[str, JobType] = {}


def register(job_type: JobType) -> None:
    """Add (or replace, by name) a job type."""
    _TYPES[job_type.name] = job_type


def unregister(name: str) -> None:
    _TYPES.pop(name, None)


def job_type(name: str) -> JobType:
    """The type called ``name``; ValidationFailed (422) naming the known ones if none is."""
    found = _TYPES.get(name)
    if found is None:
        known = ", ".join(sorted(_TYPES)) or "none"
        raise ValidationFailed(
            f"unknown job type {name!r}; known types: {known}",
            details={"fields": [{"field": "type", "message": f"must be one of: {known}"}]},
        )
    return found


def known_types() -> list[str]:
    return sorted(_TYPES)


def load_job_types(settings: Settings) -> None:
    """Import the built-in job types and the modules ``job_type_modules`` names.

    Raises ImportError for a module that is not there: a worker that could not run a type the
    API accepts must not start.
    """
    try:
        importlib.import_module("voicestream.jobs.types")
    except ModuleNotFoundError as exc:
        if exc.name != "voicestream.jobs.types":
            raise
        # contract: jobs/types/ (the job-types part) registers "tts" and "transcription".
        log.debug("no built-in job types in this build")
    for name in settings.job_type_modules:
        importlib.import_module(name)
