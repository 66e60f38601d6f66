"""Waiting on what a test-side socket client has received, without polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


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
