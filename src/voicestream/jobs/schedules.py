"""Periodic jobs: the nightly billing reconciliation, the hourly retention sweep.

A ``Schedule`` names a job type, how long its period is (a setting), and which workspaces it
runs for. Each server process (API or worker) runs ``run_schedules``; at each period boundary
(multiples of the period since the Unix epoch, so a day starts at midnight UTC) it submits one
job per workspace through the ordinary ``JobService``, with the idempotency key
``schedule:<type>:<period index>``. However many processes run, each workspace gets one job a
period: the others' submissions replay the first. The jobs are ordinary jobs: they show in
the workspace's ``/v1/jobs``, retry, and announce themselves to webhooks like any other.

Nothing runs at start-up: a period whose boundary passed while no process ran is done at the
next boundary. That keeps restarts (and test servers) from submitting work of their own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from ..config import Settings
from ..errors import Conflict, VoiceStreamError
from ..store import billing as billing_store
from ..store import db
from ..store.retention import workspaces_with_retention
from ..store.workspaces import workspace_ids
from .lifecycle import JobService

__all__ = ["SCHEDULES", "Schedule", "period_index", "run_schedules", "submit_period"]

log = logging.getLogger(__name__)

# Wake at least this often (seconds), so a clock step or a suspended host is noticed.
_MAX_NAP_S: Final = 60.0
# After a failed submission (an outage), the next try.
_RETRY_S: Final = 5.0

WorkspaceSelector = Callable[[db.Pool], Awaitable[Sequence[UUID]]]


async def _every_workspace(pool: db.Pool) -> Sequence[UUID]:
    return await workspace_ids(pool)


@dataclass(frozen=True, slots=True)
class Schedule:
    job_type: str  # registered in jobs/registry.py
    every_setting: str  # the Settings field with the period in seconds
    # Which workspaces it runs for (default: all); e.g. only those with a retention policy.
    workspaces: WorkspaceSelector = _every_workspace
    every_s: float | None = None  # a fixed period instead of the setting's

    def period_s(self, settings: Settings) -> float:
        if self.every_s is not None:
            seconds = self.every_s
        else:
            seconds = float(getattr(settings, self.every_setting))
        if not seconds > 0:
            raise ValueError(f"{self.every_setting} must be over 0 seconds")
        return seconds


# One line per periodic job type.
SCHEDULES: tuple[Schedule, ...] = (
    # Only workspaces with a Stripe subscription have anything to reconcile.
    Schedule(
        "billing_reconcile",
        "billing_reconcile_interval_seconds",
        billing_store.workspaces_with_subscriptions,
    ),
    # Only workspaces with a retention policy have anything to expire.
    Schedule("retention", "retention_interval_seconds", workspaces_with_retention),
)


def period_index(now: float, period_s: float) -> int:
    """Which period ``now`` (Unix seconds) is in: the count of boundaries since the epoch."""
    return math.floor(now / period_s)


async def submit_period(
    service: JobService, schedule: Schedule, index: int
) -> list[tuple[UUID, bool]]:
    """Submit ``schedule``'s job of period ``index`` for each of its workspaces: (workspace,
    whether this call created it). A workspace whose submission fails is logged and skipped,
    so one cannot stop the rest."""
    submitted: list[tuple[UUID, bool]] = []
    key = f"schedule:{schedule.job_type}:{index}"
    for workspace_id in await schedule.workspaces(service.pool):
        try:
            made = await service.submit(workspace_id, schedule.job_type, {}, idempotency_key=key)
        except Conflict:
            continue  # another process is submitting this very job now
        except VoiceStreamError as err:
            log.warning(
                "periodic %s for workspace %s not submitted: %s",
                schedule.job_type,
                workspace_id,
                err,
            )
            continue
        submitted.append((workspace_id, made.created))
    return submitted


async def run_schedules(
    service: JobService,
    settings: Settings,
    schedules: Sequence[Schedule] = SCHEDULES,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Submit each schedule's jobs at each of its period boundaries, until cancelled."""
    if not schedules:
        return
    periods = {s.job_type: s.period_s(settings) for s in schedules}
    done = {s.job_type: period_index(clock(), periods[s.job_type]) for s in schedules}
    while True:
        now = clock()
        behind = False
        for schedule in schedules:
            index = period_index(now, periods[schedule.job_type])
            if index <= done[schedule.job_type]:
                continue
            try:
                await submit_period(service, schedule, index)
            except VoiceStreamError as err:  # the database is down: try again soon
                log.warning("periodic %s not submitted: %s", schedule.job_type, err)
                behind = True
                continue
            except Exception:  # a bug: say so, and keep the other schedules running
                log.exception("periodic %s not submitted", schedule.job_type)
                behind = True
                continue
            done[schedule.job_type] = index
        next_boundary = min((done[t] + 1) * p for t, p in periods.items())
        nap = _RETRY_S if behind else max(0.05, next_boundary - clock())
        await sleep(min(_MAX_NAP_S, nap))
