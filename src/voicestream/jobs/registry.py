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

from pydantic import BaseModel

from ..config import Settings
from ..errors import ValidationFailed

if TYPE_CHECKING:
    from .context import JobContext

__all__ = [
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


class JobType(Protocol):
    """One kind of job. ``run`` uses its ``JobContext`` only (no SQL, no HTTP), reports progress
    as it goes (each report is a cancel checkpoint), and may run more than once for one job
    (a retry, or a worker that died): every effect it has must be idempotent per job."""

    name: str
    input_model: type[BaseModel]  # validated at submission: 422 with the fields' details

    def estimate(self, job_input: BaseModel) -> int:
        """Credits to reserve at submission."""
        ...

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome: ...


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
