"""The agent's outgoing frame queue: framing, back-pressure and barge-in."""

from __future__ import annotations

import asyncio

import pytest

from voicestream.pipeline.speaker import Speaker


async def test_frames_are_20_ms_and_the_tail_is_padded() -> None:
    sp = Speaker(16000)
    await sp.put(b"\x01\x00" * 500)  # 31.25 ms
    assert sp.get_nowait() == b"\x01\x00" * 320
    assert sp.get_nowait() is None  # the 11.25 ms tail waits for more audio
    sp.flush_partial()
    tail = sp.get_nowait()
    assert tail is not None and len(tail) == 640
    assert tail[:360] == b"\x01\x00" * 180 and tail[360:] == bytes(280)


async def test_clear_drops_everything_queued_at_once() -> None:
    sp = Speaker(16000)
    await sp.put(bytes(640 * 50))  # one second
    assert sp.active and sp.pending_seconds == pytest.approx(1.0)
    assert sp.get_nowait() is not None
    assert sp.clear() == 49
    assert not sp.active
    assert sp.get_nowait() is None


async def test_put_waits_when_full_and_resumes_when_drained() -> None:
    sp = Speaker(16000, max_seconds=0.1)  # five frames
    writer = asyncio.ensure_future(sp.put(bytes(640 * 8)))
    await asyncio.sleep(0.01)
    assert not writer.done()  # back-pressure: no unbounded buffering
    for _ in range(3):
        await sp.get()
    await asyncio.wait_for(writer, 1)
    assert sp.pending_seconds == pytest.approx(0.1)


async def test_clear_releases_a_blocked_writer() -> None:
    sp = Speaker(16000, max_seconds=0.04)
    writer = asyncio.ensure_future(sp.put(bytes(640 * 4)))
    await asyncio.sleep(0.01)
    sp.clear()
    await asyncio.wait_for(writer, 1)


async def test_drained_waits_for_the_last_frame_to_be_handed_out() -> None:
    sp = Speaker(16000)
    await sp.drained()  # nothing queued: at once
    await sp.put(bytes(640 * 2))
    waiter = asyncio.ensure_future(sp.drained())
    sp.get_nowait()
    await asyncio.sleep(0.01)
    assert not waiter.done()
    sp.get_nowait()
    await asyncio.wait_for(waiter, 1)
