"""Periodic jobs: one job per workspace and period however many processes submit it, and
submitted at each period boundary, not at start-up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Final
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict

from fixtures_services import unique_name
from server.waiting import eventually
from voicestream.config import load_settings
from voicestream.jobs.context import JobContext
from voicestream.jobs.lifecycle import JobService
from voicestream.jobs.registry import InputFiles, JobOutcome, register, unregister
from voicestream.jobs.schedules import Schedule, period_index, run_schedules, submit_period
from voicestream.store import db
from voicestream.store.workspaces import ensure_workspace

PERIODIC: Final = "test.periodic"


class NoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PeriodicJob:
    name = PERIODIC
    input_model = NoInput

    async def estimate(self, job_input: BaseModel, files: InputFiles) -> int:
        return 0

    async def run(self, ctx: JobContext, job_input: BaseModel) -> JobOutcome:
        return JobOutcome(result={})


@pytest.fixture
def periodic_type() -> Iterator[str]:
    register(PeriodicJob())
    yield PERIODIC
    unregister(PERIODIC)


async def _workspaces(pool: db.Pool, count: int) -> list[UUID]:
    async with pool.acquire() as conn:
        return [await ensure_workspace(conn, unique_name("periodic")) for _ in range(count)]


async def _jobs(pool: db.Pool, workspaces: Sequence[UUID]) -> list[tuple[UUID, str]]:
    rows = await pool.fetch(
        "SELECT workspace_id, idempotency_key FROM jobs WHERE workspace_id = ANY($1::uuid[])"
        " AND type = $2 ORDER BY idempotency_key",
        list(workspaces),
        PERIODIC,
    )
    return [(row["workspace_id"], row["idempotency_key"]) for row in rows]


def _only(workspaces: Sequence[UUID]) -> Schedule:
    async def chosen(pool: db.Pool) -> Sequence[UUID]:
        return workspaces

    return Schedule(PERIODIC, "", workspaces=chosen, every_s=3600)


async def test_every_process_submitting_a_period_makes_one_job_per_workspace(
    db_pool: db.Pool, periodic_type: str
) -> None:
    settings = load_settings({})
    workspaces = await _workspaces(db_pool, 2)
    schedule = _only(workspaces)
    # Two server processes at the same boundary, at the same moment.
    first, second = await asyncio.gather(
        submit_period(JobService(db_pool, settings), schedule, 7),
        submit_period(JobService(db_pool, settings), schedule, 7),
    )
    made = [created for _, created in first + second]
    assert made.count(True) == 2  # one per workspace; the other calls found it
    jobs = await _jobs(db_pool, workspaces)
    assert sorted(jobs) == sorted((w, f"schedule:{PERIODIC}:7") for w in workspaces)


class Clock:
    """The scheduler's clock and naps, moved by the test: a nap ends when the clock moves."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.naps: list[float] = []
        self._moved = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self._moved.clear()
        await self._moved.wait()

    def move_to(self, now: float) -> None:
        self.now = now
        self._moved.set()


async def test_jobs_are_submitted_at_each_boundary_and_not_at_start_up(
    db_pool: db.Pool, periodic_type: str
) -> None:
    workspaces = await _workspaces(db_pool, 1)
    clock = Clock(3600 * 1000 + 10.0)  # ten seconds into period 1000
    settings = load_settings({})
    runner = asyncio.create_task(
        run_schedules(
            JobService(db_pool, settings),
            settings,
            [_only(workspaces)],
            clock=clock,
            sleep=clock.sleep,
        )
    )
    try:
        # Started inside period 1000: nothing for it; it naps (at most a minute at a time).
        await eventually(lambda: clock.naps, what="the first nap")
        assert clock.naps == [60.0]
        assert await _jobs(db_pool, workspaces) == []
        clock.move_to(3600 * 1000 + 3599.5)
        await eventually(lambda: len(clock.naps) == 2, what="the second nap")
        assert clock.naps[1] == pytest.approx(0.5)  # woken for the boundary, not later
        assert await _jobs(db_pool, workspaces) == []
        clock.move_to(3600 * 1001 + 1.0)  # past the boundary
        found = await eventually(lambda: _jobs(db_pool, workspaces), what="period 1001's job")
        assert found == [(workspaces[0], f"schedule:{PERIODIC}:1001")]
        clock.move_to(3600 * 1002 + 1.0)
        await eventually(
            lambda: _jobs_count(db_pool, workspaces, 2), what="period 1002's job as well"
        )
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    assert period_index(3600 * 1002 + 1.0, 3600) == 1002


async def _jobs_count(pool: db.Pool, workspaces: Sequence[UUID], count: int) -> bool:
    return len(await _jobs(pool, workspaces)) == count
