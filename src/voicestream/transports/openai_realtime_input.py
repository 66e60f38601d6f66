"""A Realtime session's input audio: the buffer, turn detection and the transcription events.

This is all a transcription session (``?intent=transcription``, ``"type": "transcription"``)
does, and what a conversation does before its agent answers, so both kinds share it:

* ``server_vad``/``semantic_vad``: an ``STTStream`` (VAD and recognizer at 16 kHz) listens;
  speech_started / speech_stopped / committed and the transcription come from the VAD, and
  with ``interrupt_response`` speech over a response cancels it (reason ``turn_detected``).
* ``turn_detection: null``: appended audio accumulates (five minutes at most);
  ``input_audio_buffer.commit`` transcribes it as one user item.

Each finished user turn of a conversation goes to ``answer``; in a transcription session it
ends with its ``conversation.item.input_audio_transcription.completed`` event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from ..engines.stt_stream import STTEvent, STTStream
from ..errors import PayloadTooLarge, VoiceStreamError
from ..media.decode import RawStreamDecoder
from ..pipeline.session import SAMPLE_RATE
from ..protocols import openai_realtime as oa
from ..protocols.openai_realtime_events import ServerEvents
from ..rest.resources import SETTINGS
from .http_stt import transcribe_pcm
from .openai_realtime_output import RealtimeOutput
from .stt_common import open_stt_stream, parse_raw_format

__all__ = ["RealtimeInput"]

_MIN_COMMIT_BYTES: Final = SAMPLE_RATE * 2 // 10  # OpenAI refuses to commit under 100 ms
_MAX_BUFFER_BYTES: Final = SAMPLE_RATE * 2 * 300  # manual mode: five minutes uncommitted
# semantic_vad's eagerness as the silence that ends a turn ("medium"/"auto": the server's).
_EAGERNESS_SILENCE_MS: Final = {"low": 800, "high": 250}


class RealtimeInput:
    """The ``input_audio_buffer.*`` events of one connection, and the user items they make."""

    def __init__(
        self,
        rt: web.Application,
        out: RealtimeOutput,
        events: ServerEvents,
        cfg: oa.SessionConfig,
        answer: Callable[[str], Awaitable[None]],
    ) -> None:
        self.rt = rt
        self.out = out
        self.events = events
        self.cfg = cfg
        self._answer = answer
        self.decoder = _decoder(cfg.input_format)
        self.stt: STTStream | None = None
        self.stt_base_ms = 0  # input audio before the current listener opened
        self.input_samples = 0  # 16 kHz samples received in all
        self.buffer = bytearray()  # manual turns: audio since the last commit or clear
        self.speech_item: str | None = None  # the item the current utterance will become

    def start(self) -> None:
        self.stt = self._listener(self.cfg)

    async def reconfigure(self, cfg: oa.SessionConfig) -> None:
        """Follow a session update; a new format or turn detection starts a fresh listener."""
        old, self.cfg = self.cfg, cfg
        if cfg.input_format != old.input_format:
            self.decoder = _decoder(cfg.input_format)
        if cfg.turn_detection != old.turn_detection or cfg.input_format != old.input_format:
            await self._close_listener()
            self.buffer.clear()
            self.stt = self._listener(cfg)

    async def close(self) -> None:
        await self._close_listener()

    def _listener(self, cfg: oa.SessionConfig) -> STTStream | None:
        """A fresh VAD + recognizer for ``cfg``'s turn detection; None in manual mode."""
        td = cfg.turn_detection
        if td is None:
            return None
        s = self.rt[SETTINGS]
        silence = td.silence_duration_ms
        if silence is None:
            silence = _EAGERNESS_SILENCE_MS.get(td.eagerness or "", s.vad_min_silence_ms)
        threshold = s.vad_threshold if td.threshold is None else td.threshold
        # Realtime events carry text only: no word timings to wait for.
        stream = open_stt_stream(
            self.rt, source_rate=self.decoder.fmt.sample_rate, word_times=False
        )
        # OpenAI takes any threshold in 0..1; the VAD needs one strictly inside.
        stream.configure_vad(
            threshold=min(max(threshold, 0.05), 0.95),
            min_silence_ms=min(max(silence, 32), 10_000),
            min_speech_ms=s.vad_min_speech_ms,
        )
        self.stt_base_ms = self.input_samples * 1000 // SAMPLE_RATE
        self.speech_item = None
        return stream

    async def _close_listener(self) -> None:
        if self.stt is not None:
            stt, self.stt = self.stt, None
            await stt.aclose()

    # ---- client events ----------------------------------------------------------------------

    async def append(self, audio: bytes) -> None:
        try:
            pcm = self.decoder.decode(audio)
        except VoiceStreamError as err:
            err.details.update(param="audio")
            raise
        if self.stt is None and len(self.buffer) + len(pcm) > _MAX_BUFFER_BYTES:
            raise PayloadTooLarge(
                "the input audio buffer holds five minutes: commit or clear it",
                details={"param": "audio", "openai_code": "input_audio_buffer_full"},
            )
        self.input_samples += len(pcm) // 2
        if self.stt is None:
            self.buffer += pcm
            return
        for heard in await self.stt.feed(pcm):
            await self._heard(heard)

    async def commit(self) -> None:
        if self.stt is None:
            if len(self.buffer) < _MIN_COMMIT_BYTES:
                ms = len(self.buffer) / 2 / SAMPLE_RATE * 1000
                raise oa.bad_request(
                    "buffer too small: expected at least 100ms of audio, but the buffer only "
                    f"has {ms:.2f}ms of audio",
                    code="input_audio_buffer_commit_empty",
                )
            pcm = bytes(self.buffer)
            self.buffer.clear()
            item_id = oa.new_id("item")
            self._commit_item(item_id)
            source_rate = self.decoder.fmt.sample_rate
            transcript = await transcribe_pcm(self.rt, pcm, source_rate=source_rate)
            await self._transcribed(item_id, transcript.text, len(pcm) / 2 / SAMPLE_RATE)
            return
        # Server VAD with a manual commit: whatever the open utterance holds becomes the item.
        stt, speech_item = self.stt, self.speech_item
        self.stt = None
        finals = [e for e in await stt.end() if e.kind == "final"]
        self.stt = self._listener(self.cfg)
        if not finals:
            raise oa.bad_request(
                "there is no speech in the input audio buffer to commit",
                code="input_audio_buffer_commit_empty",
            )
        item_id = speech_item or oa.new_id("item")
        self._commit_item(item_id)
        text = " ".join(e.text for e in finals if e.text)
        await self._transcribed(item_id, text, finals[-1].end - finals[0].start)

    async def clear(self) -> None:
        self.buffer.clear()
        if self.stt is not None:
            await self._close_listener()
            self.stt = self._listener(self.cfg)
        self.out.emit(self.events.cleared())

    # ---- what was heard ---------------------------------------------------------------------

    async def _heard(self, ev: STTEvent) -> None:
        match ev.kind:
            case "speech_start":
                self.speech_item = oa.new_id("item")
                start_ms = self.stt_base_ms + int(ev.start * 1000)
                self.out.emit(self.events.speech_started(self.speech_item, start_ms))
                td = self.cfg.turn_detection
                if td is not None and td.interrupt_response and self.out.responding:
                    self.out.cancel("turn_detected")
            case "final":
                item_id = self.speech_item or oa.new_id("item")
                self.speech_item = None
                end_ms = self.stt_base_ms + int(ev.end * 1000)
                self.out.emit(self.events.speech_stopped(item_id, end_ms))
                self._commit_item(item_id)
                await self._transcribed(item_id, ev.text, ev.end - ev.start)

    def _commit_item(self, item_id: str) -> None:
        self.out.emit(self.events.committed(item_id, self.out.last_item_id))
        self.out.emit(
            self.events.item_added(
                self.events.user_audio_item(item_id, None), self.out.last_item_id
            )
        )
        self.out.last_item_id = item_id

    async def _transcribed(self, item_id: str, text: str, seconds: float) -> None:
        text = text.strip()
        if text:
            self.out.emit(self.events.transcription_delta(item_id, text))
        self.out.emit(self.events.transcription_completed(item_id, text, seconds))
        for event in self.events.item_done(self.events.user_audio_item(item_id, text)):
            self.out.emit(event)
        if text and self.cfg.kind == "realtime":
            await self._answer(text)  # a noise the VAD took for speech has no text


def _decoder(name: oa.AudioName) -> RawStreamDecoder:
    return RawStreamDecoder(parse_raw_format(oa.RAW_FORMATS[name]), SAMPLE_RATE)
