"""Event-loop lag monitor.

A blocked loop delays every session on the process, so production watches it continuously: a
task sleeps a fixed interval and records how much later than asked it woke up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

__all__ = ["monitor_loop_lag"]

log = logging.getLogger(__name__)


async def monitor_loop_lag(
    observe: Callable[[float], None],
    *,
    interval: float = 0.25,
    warn_after: float = 0.1,
) -> None:
    """Run until cancelled; call ``observe(lag_seconds)`` once per interval."""
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(interval)
        lag = max(0.0, time.perf_counter() - t0 - interval)
        observe(lag)
        if lag > warn_after:
            log.warning("event loop lagged %.0f ms", lag * 1000)
