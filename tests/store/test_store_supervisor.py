"""The supervisor of the embedded services: it backs off from a service that keeps dying,
survives its own surprises, and never brings a service back on a port its clients do not know.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from fixtures_services import make_data_dir
from server.waiting import eventually
from voicestream.store._proc import pid_alive
from voicestream.store.embedded import EmbeddedServiceError, EmbeddedServices
from voicestream.store.supervisor import RestartBackoff, supervise


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_service_that_dies_right_after_each_restart_is_restarted_ever_more_slowly() -> None:
    clock = _Clock()
    backoff = RestartBackoff(first_s=0.5, max_s=4.0, stable_s=30.0, clock=clock)
    waits = []
    for _ in range(6):
        wait = backoff.next_wait()
        waits.append(wait)
        clock.now += wait
        backoff.attempted()
        clock.now += 1.0  # up for a second, then dead again
    assert waits == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]
    # One that then stays up a while is restarted at once when it dies.
    clock.now += 30.0
    assert backoff.next_wait() == 0.0


class _Scripted:
    """Scripted answers of ``EmbeddedServices``' two supervision calls."""

    def __init__(self, answers: list[BaseException | set[str]]) -> None:
        self.answers = answers
        self.restarted: list[set[str]] = []

    async def dead_services(self) -> set[str]:
        answer = self.answers.pop(0) if self.answers else set()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def restart(self, names: set[str]) -> None:
        self.restarted.append(names)


async def test_a_surprise_is_logged_with_its_traceback_and_supervision_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = _Scripted([RuntimeError("surprise"), {"redis"}])
    task = asyncio.create_task(supervise(services, poll_s=0.01))
    try:
        await eventually(lambda: services.restarted, within=5, what="restart after a surprise")
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert services.restarted == [{"redis"}]
    surprise = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert surprise and surprise[0].exc_info is not None
    caplog.clear()  # the ERROR was the point of this test


@pytest_asyncio.fixture(loop_scope="session")
async def redis_only() -> AsyncIterator[tuple[EmbeddedServices, Path]]:
    data_dir = await asyncio.to_thread(make_data_dir, "voicestream-supervisor-")
    services = EmbeddedServices(data_dir)
    try:
        await services.acquire_only(postgres=False, redis=True)
        yield services, data_dir
    finally:
        await services.release()
        await asyncio.to_thread(shutil.rmtree, data_dir, True)


def _bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def _redis_pid(data_dir: Path) -> int:
    return int((data_dir / "redis" / "redis.pid").read_text().strip())


def _redis_port(data_dir: Path) -> int:
    for line in (data_dir / "redis" / "redis.conf").read_text().splitlines():
        if line.startswith("port "):
            return int(line.split()[1])
    raise AssertionError("no port in redis.conf")


async def test_a_service_whose_port_was_taken_is_not_brought_back_elsewhere(
    redis_only: tuple[EmbeddedServices, Path],
) -> None:
    services, data_dir = redis_only
    port = await asyncio.to_thread(_redis_port, data_dir)
    pid = await asyncio.to_thread(_redis_pid, data_dir)
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: not pid_alive(pid), within=10, what="redis gone")
    assert await services.dead_services() == {"redis"}
    squatter = socket.socket()
    try:
        # Its old connections may linger in TIME_WAIT, and a forked child (an AOF rewrite)
        # may hold the listening socket a moment longer, as after any crash.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await eventually(lambda: _bound(squatter, port), within=10, what="the port taken")
        squatter.listen()
        with pytest.raises(EmbeddedServiceError, match=str(port)):
            await services.restart({"redis"})
        # Nothing was started on some other port the clients would never find.
        assert await services.dead_services() == {"redis"}
    finally:
        squatter.close()
    await services.restart({"redis"})
    assert await services.dead_services() == set()
    assert await asyncio.to_thread(_redis_port, data_dir) == port
