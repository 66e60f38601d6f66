"""Waiting on what a test-side socket client has received, without polling."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp


async def wait_for_change(
    pred: Callable[[], Any],
    changed: asyncio.Event,
    reader: asyncio.Future[Any],
    *,
    within: float,
    describe: Callable[[], str],
) -> Any:
    """Return ``pred()``'s first truthy value, re-checked whenever ``changed`` is set.

    Fails when the reader ends first (the socket closed) or after ``within`` seconds, with
    ``describe()`` saying what had arrived.
    """
    deadline = time.monotonic() + within
    while not (result := pred()):
        if reader.done():
            raise AssertionError(f"socket closed while waiting; {describe()}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out; {describe()}")
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            pass
    return result


class SocketRecorder:
    """What the test-side socket clients share: a reader task that records each frame as it
    arrives (``_read``, written by the subclass), an event set on every arrival, and the waits.

    A subclass sets up its own records first, then calls ``super().__init__(ws)``.
    """

    close_within = 10.0  # seconds ``closed`` waits by default

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read_all())

    async def _read(self) -> None:
        """Record every frame until the socket closes, setting ``_changed`` after each."""
        raise NotImplementedError

    def describe(self) -> str:
        """What has arrived, for a failed wait's message."""
        raise NotImplementedError

    async def _read_all(self) -> None:
        try:
            await self._read()
        finally:
            self._changed.set()  # waiters see the end of the socket

    async def wait_for(self, pred: Callable[[], Any], within: float = 30.0) -> Any:
        return await wait_for_change(
            pred, self._changed, self._reader, within=within, describe=self.describe
        )

    async def closed(self, within: float | None = None) -> int | None:
        await asyncio.wait_for(self._reader, self.close_within if within is None else within)
        close_code: int | None = self.ws.close_code
        return close_code


class JsonTextRecorder(SocketRecorder):
    """Every text message a socket receives (as JSON), until the server closes it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.texts: list[dict[str, Any]] = []
        super().__init__(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.texts.append(json.loads(msg.data))
                self._changed.set()

    def describe(self) -> str:
        return f"received: {self.texts}"


async def eventually(
    check: Callable[[], Any], *, within: float = 10.0, every: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` (a function or a coroutine function) until it returns something truthy
    and return that; fail after ``within`` seconds, saying ``what`` was awaited and the last
    value seen. For state with no event to wait on (metrics, pools, database rows)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            awaited = what or repr(check)
            raise AssertionError(f"not true within {within} s: {awaited} (last: {result!r})")
        await asyncio.sleep(every)


def eventually_sync(
    check: Callable[[], Any], *, within: float = 10.0, every: float = 0.1, what: str = ""
) -> Any:
    """``eventually`` for tests without an event loop (subprocess and process-tree tests)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            awaited = what or repr(check)
            raise AssertionError(f"not true within {within} s: {awaited} (last: {result!r})")
        time.sleep(every)
