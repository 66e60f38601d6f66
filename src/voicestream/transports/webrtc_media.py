"""Audio between aiortc and a conversation: decoded user frames in, paced agent frames out.

aiortc decodes Opus to ``av.AudioFrame`` (48 kHz, usually packed stereo ``s16``; other codecs
and peers give mono, planar or other rates), while the session wants mono s16le at 16 kHz.
Outgoing audio is one pull-based track: aiortc's sender calls ``recv`` and the track paces
itself at real time, taking each 20 ms frame from the speaker only when it is due, so a
barge-in that empties the speaker silences the agent within one frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..media.resample import Resampler
from ..pipeline.speaker import Speaker

__all__ = ["AgentAudioTrack", "UserAudioConverter"]

# Behind schedule by more than this (a stalled loop): start a new timeline rather than burst
# the backlog out at once, which the browser's jitter buffer would only have to drop.
_MAX_LAG_S = 0.2


class UserAudioConverter:
    """Any decoded WebRTC audio frame → mono s16le at ``dst_rate``."""

    def __init__(self, dst_rate: int) -> None:
        self.dst_rate = dst_rate
        self._resampler: Resampler | None = None

    def convert(self, frame: av.AudioFrame) -> bytes:
        samples = frame.to_ndarray()
        channels = len(frame.layout.channels)
        if samples.dtype != np.int16:
            # Float or s32 from other decoders: scale to s16 rather than truncate.
            samples = _to_int16(samples)
        if frame.format.is_planar:
            # One row per channel.
            mono = samples.mean(axis=0) if channels > 1 else samples[0]
        else:
            # One row of interleaved samples.
            flat = samples.reshape(-1)
            mono = flat.reshape(-1, channels).mean(axis=1) if channels > 1 else flat
        pcm = np.asarray(mono, dtype="<i2").tobytes()
        rate = int(frame.sample_rate)
        if self._resampler is None or self._resampler.src_rate != rate:
            # The first frame, or the peer renegotiated to another clock rate.
            self._resampler = Resampler(rate, self.dst_rate)
        return self._resampler.process(pcm)


def _to_int16(samples: np.ndarray) -> np.ndarray:
    if np.issubdtype(samples.dtype, np.floating):
        return np.clip(samples * 32767.0, -32768, 32767).astype(np.int16)
    if samples.dtype == np.int32:
        return (samples >> 16).astype(np.int16)
    if samples.dtype == np.uint8:
        return ((samples.astype(np.int16) - 128) << 8).astype(np.int16)
    return samples.astype(np.int16)


class AgentAudioTrack(MediaStreamTrack):
    """The agent's voice as an aiortc audio track: 20 ms frames from ``speaker``, silence when
    it has nothing queued, paced by this track's own clock (like aiortc's AudioStreamTrack)."""

    kind = "audio"

    def __init__(self, speaker: Speaker, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._speaker = speaker
        self._rate = speaker.sample_rate
        self._samples = speaker.frame_bytes // 2
        self._silence = bytes(speaker.frame_bytes)
        self._time_base = Fraction(1, self._rate)
        self._clock = clock
        self._start: float | None = None
        self._pts = 0
        self.voiced_frames = 0  # frames that carried agent audio
        self.first_voiced_at: float | None = None  # ``clock`` time of the first, for metrics

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        else:
            self._pts += self._samples
            due = self._start + self._pts / self._rate
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > _MAX_LAG_S:
                self._start += now - due
        # Taken only now that it is due, so a barge-in during the wait still silences it.
        pcm = self._speaker.get_nowait()
        if pcm is None:
            pcm = self._silence
        else:
            self.voiced_frames += 1
            if self.first_voiced_at is None:
                self.first_voiced_at = self._clock()
        frame = av.AudioFrame(format="s16", layout="mono", samples=self._samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = self._rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        return frame
