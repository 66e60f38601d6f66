"""Liveness, readiness and metrics endpoints (no key needed)."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from ..errors import ServiceUnavailable
from ..rest.resources import METRICS, POOL, REDIS, REGISTRY

__all__ = ["Liveness", "Readiness", "healthz", "metrics", "readyz"]

log = logging.getLogger(__name__)
_CHECK_TIMEOUT_S = 2.0


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool] = Field(
        description="Each dependency: `database`, `redis`, and `engine:<name>` per engine."
    )
    # Only when not ready:
    not_ready: list[str] | None = Field(None, description="The checks that failed.")
    loading: bool | None = Field(
        None, description="Whether engines are still loading their models at start-up."
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(text=Liveness(status="ok").model_dump_json())


async def readyz(request: web.Request) -> web.Response:
    rt = request.app
    checks: dict[str, bool] = {}
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            checks["database"] = await rt[POOL].fetchval("SELECT 1") == 1
    except Exception as exc:
        log.warning("readiness: database check failed: %s", exc)
        checks["database"] = False
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            checks["redis"] = bool(await rt[REDIS].ping())
    except Exception as exc:
        log.warning("readiness: redis check failed: %s", exc)
        checks["redis"] = False
    for name, ok in rt[REGISTRY].ready().items():
        checks[f"engine:{name}"] = ok
    failed = sorted(name for name, ok in checks.items() if not ok)
    ready = not failed
    body = Readiness(
        status="ready" if ready else "not_ready",
        checks=checks,
        not_ready=failed or None,
        # Engines are false while their models still load at start-up, or after one failed.
        loading=None if ready else not rt[REGISTRY].warmed,
    )
    return web.json_response(
        text=body.model_dump_json(exclude_none=True),
        status=200 if ready else 503,
        # A dependency that is down is restarted or reconnected by itself: ask again soon.
        headers=None if ready else {"Retry-After": str(ServiceUnavailable.retry_after_s)},
    )


async def metrics(request: web.Request) -> web.Response:
    rt = request.app
    body = generate_latest(rt[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
