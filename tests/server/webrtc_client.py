"""A test-side WebRTC client (aiortc): a paced microphone track, a recorder of the agent's
voice, and the ``events`` data channel. Shared by the WebRTC tests and the benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import re
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

WAIT_S = 45.0


class SpeechTrack(MediaStreamTrack):
    """A microphone that is silent until ``speak`` is called, then says one utterance.

    Paced at 20 ms like a real capture device; 48 kHz mono, as a browser would send.
    """

    kind = "audio"
    RATE = 48000
    SAMPLES = 960

    def __init__(self) -> None:
        super().__init__()
        self._queue = bytearray()
        self._start: float | None = None
        self._pts = 0
        self.spoke_until: float | None = None  # monotonic time the last speech frame went out

    def speak(self, pcm: bytes) -> None:
        self._queue += pcm
        self.spoke_until = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += self.SAMPLES
            wait = self._start + self._pts / self.RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        n = self.SAMPLES * 2
        chunk = bytes(self._queue[:n])
        del self._queue[:n]
        if chunk and not self._queue:
            self.spoke_until = time.monotonic()
        chunk = chunk.ljust(n, b"\0")
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(chunk, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.RATE)
        return frame


class AudioRecorder:
    """The agent's voice as the client hears it: 16 kHz mono, plus when it was voiced."""

    def __init__(self) -> None:
        self.pcm = bytearray()
        self.voiced_frames = 0
        self.last_voiced: float | None = None
        self.first_voiced_after: Callable[[], float | None] = lambda: None
        self.voiced_times: list[float] = []
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)

    async def run(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for out in self._resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1)
                self.pcm += samples.astype("<i2").tobytes()
                if np.abs(samples.astype(np.int32)).max() > 300:
                    now = time.monotonic()
                    self.voiced_frames += 1
                    self.last_voiced = now
                    self.voiced_times.append(now)

    def mark(self) -> int:
        return len(self.pcm)


class Client:
    """An aiortc peer with a mic track and an ``events`` data channel."""

    def __init__(self, *, data_channel: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = SpeechTrack()
        self.pc.addTrack(self.mic)
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self.recorder = AudioRecorder()
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)
        if data_channel:
            self.channel: RTCDataChannel = self.pc.createDataChannel("events")
            self.channel.on("message", self._on_message)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.create_task(self.recorder.run(track)))

    def _on_message(self, message: str | bytes) -> None:
        self.events.append(json.loads(message))

        async def notify() -> None:
            async with self._arrived:
                self._arrived.notify_all()

        self._tasks.append(asyncio.create_task(notify()))

    async def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], *, after: int = 0, within: float = WAIT_S
    ) -> dict[str, Any]:
        async def scan() -> dict[str, Any]:
            async with self._arrived:
                while True:
                    for ev in self.events[after:]:
                        if pred(ev):
                            return ev
                    await self._arrived.wait()

        try:
            return await asyncio.wait_for(scan(), within)
        except TimeoutError:
            raise AssertionError(f"no matching event within {within} s: {self.events}") from None

    def send(self, obj: dict[str, Any] | str) -> None:
        self.channel.send(obj if isinstance(obj, str) else json.dumps(obj))

    async def close(self) -> None:
        await self.pc.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def split_candidates(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """The offer without its candidates, and those candidates in the PATCH shape."""
    mids = re.findall(r"^a=mid:(\S+)", sdp, re.M)
    lines: list[str] = []
    candidates: list[dict[str, Any]] = []
    index = -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
        if line.startswith("a=candidate:"):
            candidates.append(
                {"candidate": line[2:], "sdp_mid": mids[index], "sdp_mline_index": index}
            )
        elif not line.startswith("a=end-of-candidates"):
            lines.append(line)
    return "\r\n".join(lines) + "\r\n", candidates


async def client_offer(client: Client) -> str:
    await client.pc.setLocalDescription(await client.pc.createOffer())
    assert client.pc.localDescription is not None
    return client.pc.localDescription.sdp
