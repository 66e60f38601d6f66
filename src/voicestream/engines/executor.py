"""Dedicated inference threads for one engine, serving jobs earliest-deadline-first.

Why not ``loop.run_in_executor`` with a ``ThreadPoolExecutor``: that queue is FIFO, so when 32
streams start at once the 32nd stream's first clause waits behind every other stream's second
and third clause. Here each job carries the moment its audio is needed (a first clause: now; a
continuation: when the listener's buffer runs dry), and idle threads always take the most urgent
job. First chunks are scheduled ahead of continuations without starving them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["InferenceExecutor"]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(order=True, slots=True)
class _Job:
    deadline: float
    seq: int
    fn: Callable[[], Any] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    queued_at: float = field(compare=False, default=0.0)


class InferenceExecutor:
    """A fixed pool of worker threads with a deadline-ordered queue."""

    def __init__(self, name: str, threads: int) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.name = name
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self._busy = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    @property
    def threads(self) -> int:
        return len(self._threads)

    @property
    def queued(self) -> int:
        return len(self._heap)

    @property
    def busy(self) -> int:
        return self._busy

    async def run(self, fn: Callable[[], T], *, deadline: float | None = None) -> T:
        """Run ``fn`` on a worker thread; ``deadline`` is a ``time.monotonic()`` instant.

        Cancelling the awaiting task drops the job if it has not started yet.
        """
        return await self.submit(fn, deadline=deadline)

    def submit(self, fn: Callable[[], T], *, deadline: float | None = None) -> asyncio.Future[T]:
        """Queue ``fn`` now and return its future; call from the event loop.

        The job is dropped only if the future itself is cancelled, so awaiting it through
        ``asyncio.shield`` makes work that must happen (giving a decoder back) outlive a
        cancelled caller.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        now = time.monotonic()
        job = _Job(now if deadline is None else deadline, next(self._seq), fn, future, loop, now)
        with self._cv:
            if self._closed:
                raise RuntimeError(f"executor {self.name} is shut down")
            heapq.heappush(self._heap, job)
            self._cv.notify()
        return future

    def shutdown(self) -> None:
        with self._cv:
            self._closed = True
            pending, self._heap = self._heap, []
            self._cv.notify_all()
        for job in pending:
            job.loop.call_soon_threadsafe(_cancel, job.future)
        for t in self._threads:
            t.join(timeout=5)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job = heapq.heappop(self._heap)
                if job.future.cancelled():
                    continue
                self._busy += 1
            try:
                result = job.fn()
            except BaseException as exc:  # handed to the awaiting coroutine, never lost
                _deliver(job, _set_exception, exc)
            else:
                _deliver(job, _set_result, result)
            finally:
                with self._cv:
                    self._busy -= 1


def _deliver(job: _Job, setter: Callable[[asyncio.Future[Any], Any], None], value: Any) -> None:
    try:
        job.loop.call_soon_threadsafe(setter, job.future, value)
    except RuntimeError:
        # The caller's loop closed while we computed: nobody is left to tell.
        log.debug("%s: result dropped, event loop closed", job.fn)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _cancel(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.cancel()
