"""The server's jobs: the service the API submits to, and (by default) a worker in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..jobs.context import JobEngines
from ..jobs.runtime import open_jobs
from ..rest.files import FILES
from ..rest.jobs import JOBS
from ..rest.moderation import MODERATOR
from ..rest.resources import (
    KNOWLEDGE,
    MEDIA_EXECUTOR,
    POOL,
    REGISTRY,
    SETTINGS,
    STT_EXECUTOR,
    TTS_EXECUTORS,
)
from ..store.embedded import ServiceURLs

__all__ = ["SERVICE_URLS", "jobs_runtime"]

# Where PostgreSQL and Redis are (configured or embedded): the job stream opens its own
# Redis connections (taskiq-redis), blocking reads included, apart from the request path's.
SERVICE_URLS: web.AppKey[ServiceURLs] = web.AppKey("voicestream_service_urls", ServiceURLs)


async def jobs_runtime(app: web.Application) -> AsyncIterator[None]:
    """After the runtime and the files (it needs the pool, engines and file store); stops
    before them."""
    settings = app[SETTINGS]
    tts_executors = app[TTS_EXECUTORS]
    engines = JobEngines(
        registry=app[REGISTRY],
        tts_executors=tts_executors,
        stt_executor=app[STT_EXECUTOR],
        media_executor=app[MEDIA_EXECUTOR],
        vectors=app[KNOWLEDGE].vectors,  # retention, data export and deletion erase vectors
        screen_for=app[MODERATOR].screen_for,  # what a job speaks meets its content policy
    )
    async with open_jobs(
        settings,
        app[POOL],
        app[SERVICE_URLS].redis_url,
        engines,
        worker=settings.jobs_worker,
        # Each job reads its workspace's uploads and writes its outputs (app[FILES], before).
        files=lambda job: app[FILES].for_job(job.workspace_id, job.id),
    ) as jobs:
        app[JOBS] = jobs.service
        yield
