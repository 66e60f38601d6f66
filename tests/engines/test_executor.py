"""The deadline-ordered inference executor."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from voicestream.engines.executor import InferenceExecutor


async def test_runs_off_the_loop_thread_and_returns_results() -> None:
    ex = InferenceExecutor("t", 2)
    try:
        loop_thread = threading.get_ident()
        ident = await ex.run(threading.get_ident)
        assert ident != loop_thread
        assert await ex.run(lambda: 6 * 7) == 42
    finally:
        ex.shutdown()


async def test_exceptions_reach_the_caller() -> None:
    ex = InferenceExecutor("t", 1)
    try:
        with pytest.raises(ZeroDivisionError):
            await ex.run(lambda: 1 / 0)
        assert await ex.run(lambda: "still alive") == "still alive"
    finally:
        ex.shutdown()


async def test_earliest_deadline_runs_first() -> None:
    ex = InferenceExecutor("t", 1)
    gate = threading.Event()
    order: list[str] = []
    try:
        blocker = asyncio.ensure_future(ex.run(gate.wait))
        await asyncio.sleep(0.05)  # the single thread is now busy
        now = time.monotonic()
        jobs = [
            asyncio.ensure_future(ex.run(lambda n=name: order.append(n), deadline=now + d))
            for name, d in (("late", 5.0), ("urgent", -1.0), ("soon", 1.0))
        ]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(blocker, *jobs)
        assert order == ["urgent", "soon", "late"]
    finally:
        ex.shutdown()


async def test_cancelled_job_is_skipped() -> None:
    ex = InferenceExecutor("t", 1)
    gate = threading.Event()
    ran: list[int] = []
    try:
        blocker = asyncio.ensure_future(ex.run(gate.wait))
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(ex.run(lambda: ran.append(1)))
        await asyncio.sleep(0.01)
        doomed.cancel()
        gate.set()
        await blocker
        assert await ex.run(lambda: len(ran)) == 0
    finally:
        ex.shutdown()
