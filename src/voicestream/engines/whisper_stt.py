"""Whisper speech recognition on CTranslate2 (``faster-whisper``), with speculative finals.

One ``WhisperModel`` is loaded per engine and shared by every stream: CTranslate2 is thread-safe
and runs up to ``workers`` decodes at once. A stream's decoder is only an audio buffer (plus, once
it hears a live utterance, a decoder of a cheap ``partials`` engine for captions), so decoders
are pooled for bookkeeping, not for memory; ``max_streams`` still caps the streams admitted.

Whisper's encoder always sees a 30 s window, so a final costs about the same however short the
utterance (≈ 0.3-0.5 s on two cores). To hide that, a decoder starts decoding on its engine's
own threads when the VAD hears the first short pause (``pause``); if speech resumes the result
is thrown away, and if the VAD closes the turn with nothing fed since, ``finish`` returns it.

Nothing is ever downloaded: the model is a local folder (``model.bin``, ``config.json``,
``tokenizer.json``, a vocabulary), faster-whisper's own Silero VAD filter is off (the stream
segments already), and segments Whisper invents on silence, noise or tones are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from voicestream.engines.base import (
    DecoderPoolStats,
    STTDecoder,
    STTEngine,
    Transcript,
    Word,
    primary_language,
)
from voicestream.engines.process_memory import resident_bytes
from voicestream.engines.whisper_model_files import (
    WhisperModelFiles,
    WhisperModelInfo,
    inspect_whisper_dir,
    packaged_whisper,
)
from voicestream.errors import (
    EngineError,
    ModelFileError,
    ModelNotInstalled,
    UnsupportedLanguage,
    ValidationFailed,
)

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = [
    "SpeculationStats",
    "WhisperDecoder",
    "WhisperModelFiles",
    "WhisperModelInfo",
    "WhisperSTT",
    "inspect_whisper_dir",
    "packaged_whisper",
]

log = logging.getLogger(__name__)

_RATE = 16000
# Hallucination guards, per segment. Real speech, even a lone "Yes.", scores no_speech_prob
# 0.1-0.2 with tiny.en; tones and hums score 0.75+ and come out as "Beep beep beep…" (which the
# compression ratio also catches once it repeats).
_NO_SPEECH_PROB = 0.6
_MIN_AVG_LOGPROB = -1.0
_MAX_COMPRESSION_RATIO = 2.4
# Bounds a runaway decode: fast speech is ~7 tokens a second with timestamps.
_TOKENS_PER_SECOND = 10
_MIN_NEW_TOKENS = 20
_MAX_NEW_TOKENS = 224
# The stream cuts utterances at 25 s; past this, a decoder keeps no more (bounded memory).
_MAX_BUFFER_S = 60.0


@dataclass(frozen=True, slots=True)
class SpeculationStats:
    """Speculative finals so far: how many started, became the final, or were thrown away
    (speech resumed, or the stream went away); ``running`` are decoding or queued now."""

    started: int = 0
    used: int = 0
    discarded: int = 0
    running: int = 0


class WhisperDecoder(STTDecoder):
    """An utterance's audio, decoded by the shared model at the end (or early, on a pause).

    Used by one thread at a time (the contract's guarantee); a speculation runs on the engine's
    threads on its own copy of the audio, so nothing here is shared with it.
    """

    speculates = True

    def __init__(self, engine: WhisperSTT) -> None:
        self._engine = engine
        self._audio = bytearray()
        self._speculation: tuple[int, Future[Transcript]] | None = None
        # Borrowed from the partials engine at the first live utterance, not with this decoder:
        # a recording never reads partials, and a pocketsphinx decoder is ~95 MB to hold.
        self.partial: STTDecoder | None = None
        self._live = True  # False for a whole recording: nobody reads its partials

    def start(self) -> None:
        self._drop_speculation()
        self._audio.clear()
        partials = self._engine.partials
        if partials is not None and self._live:
            if self.partial is None:
                self.partial = partials.acquire()
            # Also ends the previous utterance's partial pass, here rather than in finish(),
            # where it would delay the final for a result nobody reads.
            self.partial.start()

    def feed(self, pcm: bytes) -> str:
        room = int(_MAX_BUFFER_S * _RATE) * 2 - len(self._audio)
        self._audio += pcm[: max(0, room)]
        if self.partial is None or not self._live:
            return ""
        return self.partial.feed(pcm)

    def calibrate(self, pcm: bytes) -> None:
        # Whisper needs no channel estimate. A recording is fed faster than real time, so
        # nobody waits on its partials or gains from a head start: both are skipped, and
        # their CPU left to the live streams.
        self._live = False

    def pause(self) -> None:
        if not self._engine.speculative or not self._live or not self._audio:
            return
        self._drop_speculation()
        audio = bytes(self._audio)
        future = self._engine.submit_decode(audio, self.word_times, self.language)
        self._speculation = (len(audio), future)
        self._engine.count_speculation("started")

    def resume(self) -> None:
        self._drop_speculation()

    def finish(self) -> Transcript:
        audio = bytes(self._audio)
        self._audio.clear()
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            covered, future = speculation
            # cancel() succeeds only while the job waits for a thread: then decoding here is
            # no slower than waiting, and leaves the engine's threads to other streams.
            if covered == len(audio) and not future.cancel():
                try:
                    transcript = future.result()
                except Exception:  # decoded again below; the error is worth a line
                    log.warning("speculative Whisper decode failed; decoding again", exc_info=True)
                else:
                    self._engine.count_speculation("used")
                    return transcript
            future.cancel()
            self._engine.count_speculation("discarded")
        return self._engine.decode(audio, word_times=self.word_times, language=self.language)

    def abandon(self) -> None:
        # The stream went away: a final nobody reads is not worth a decode.
        self.reset()

    def reset(self) -> None:
        self._drop_speculation()
        self._audio.clear()
        self._live = True
        self.word_times = True
        self.language = None

    def _drop_speculation(self) -> None:
        if self._speculation is not None:
            # A decode already running cannot be stopped; its result is simply never read.
            self._speculation[1].cancel()
            self._speculation = None
            self._engine.count_speculation("discarded")


class WhisperSTT(STTEngine):
    """Whisper on CTranslate2: int8 on CPU, float16 on CUDA.

    Args:
        files: the model folder (``packaged_whisper()`` or one from the models directory).
        device: "auto" (CUDA when CTranslate2 sees a GPU), "cpu" or "cuda".
        compute_type: CTranslate2's; None picks int8 on CPU, float16 on CUDA.
        threads: CTranslate2 threads per decode (``cpu_threads``).
        workers: decodes that run at once (CTranslate2 ``num_workers``), and the threads that
            run speculative decodes.
        max_streams: streams admitted at once (None: unbounded).
        partials: a cheap engine whose decoders give live partial hypotheses (pocketsphinx);
            None: streams get no partials, only finals.
        name: the engine's name in catalogs ("whisper", or "whisper-<model>" for extra models).

    Raises:
        ModelFileError: the folder is not a usable Whisper model (checked cheaply here; the
            weights load in ``warm_up``, or on the first decoder).
    """

    sample_rate = _RATE

    def __init__(
        self,
        files: WhisperModelFiles,
        *,
        device: str = "auto",
        compute_type: str | None = None,
        threads: int = 2,
        workers: int = 2,
        max_streams: int | None = None,
        partials: STTEngine | None = None,
        name: str = "whisper",
    ) -> None:
        if threads < 1 or workers < 1:
            raise ValueError("threads and workers must be at least 1")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda; got {device!r}")
        if partials is not None and partials.sample_rate != _RATE:
            raise ValueError("the partials engine must take 16 kHz audio")
        super().__init__(max_streams=max_streams)
        self.files = files
        self.info = inspect_whisper_dir(files.path)
        self.name = name
        self.multilingual = self.info.multilingual
        self.language = "multi" if self.multilingual else "en-US"
        self.device = _resolve_device(device)
        self.compute_type = compute_type or ("float16" if self.device == "cuda" else "int8")
        self._threads = threads
        self._workers = workers
        self.partials = partials
        # Off: finals are decoded only when the VAD closes the turn (for measurements).
        self.speculative = True
        self._model: WhisperModel | None = None
        self._load_lock = threading.Lock()
        self._rss_bytes = 0
        self._pool: ThreadPoolExecutor | None = None
        self._free: list[WhisperDecoder] = []
        self._lent = 0
        self._pool_lock = threading.Lock()
        self._speculations = SpeculationStats()

    # Loading

    def warm_up(self) -> None:
        self._ensure_model()
        if self.partials is not None:
            self.partials.warm_up()

    def _ensure_model(self) -> WhisperModel:
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
                self._pool = ThreadPoolExecutor(self._workers, f"{self.name}-speculate")
            return self._model

    def _load(self) -> WhisperModel:
        from faster_whisper import WhisperModel

        # One INFO line per decode otherwise; an operator can still turn it on by name.
        fw_log = logging.getLogger("faster_whisper")
        if fw_log.level == logging.NOTSET:
            fw_log.setLevel(logging.WARNING)
        before = resident_bytes()
        t0 = time.monotonic()
        try:
            # A folder path (never a model name) and local_files_only: no hub, no download.
            model = WhisperModel(
                str(self.files.path),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self._threads,
                num_workers=self._workers,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelFileError(f"{self.files.path}: Whisper model failed to load: {exc}") from exc
        self._rss_bytes = max(0, resident_bytes() - before)
        log.info(
            "whisper %s loaded on %s/%s in %.2f s",
            self.info.name,
            self.device,
            self.compute_type,
            time.monotonic() - t0,
        )
        return model

    def close(self) -> None:
        """Stop the speculation threads (decodes under way finish; their results are dropped)."""
        with self._load_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # The decoder pool

    def acquire(self) -> WhisperDecoder:
        self._ensure_model()
        with self._pool_lock:
            decoder = self._free.pop() if self._free else WhisperDecoder(self)
            self._lent += 1
        return decoder

    def release(self, decoder: STTDecoder, *, learn: bool = True) -> None:
        if not isinstance(decoder, WhisperDecoder) or decoder._engine is not self:
            raise TypeError("not a decoder of this Whisper engine")
        decoder.reset()
        partial, decoder.partial = decoder.partial, None
        try:
            if partial is not None and self.partials is not None:
                self.partials.release(partial, learn=learn)
        finally:
            self._put_back(decoder)

    def _put_back(self, decoder: WhisperDecoder) -> None:
        with self._pool_lock:
            self._lent -= 1
            self._free.append(decoder)

    def pool_stats(self) -> DecoderPoolStats:
        streams = super().pool_stats()
        with self._pool_lock:
            return DecoderPoolStats(
                self._lent, len(self._free), streams.streams, streams.max_streams
            )

    # Decoding

    def submit_decode(
        self, pcm: bytes, word_times: bool = True, language: str | None = None
    ) -> Future[Transcript]:
        """Decode ``pcm`` on the engine's own threads (a speculative final)."""
        self._ensure_model()
        self._count_running(+1)
        try:
            pool = self._pool
            if pool is None:
                raise RuntimeError("closed")
            future = pool.submit(self.decode, pcm, word_times=word_times, language=language)
        except RuntimeError:  # closed: a cancelled speculation makes finish() decode in place
            self._count_running(-1)
            future = Future()
            future.cancel()
            return future
        future.add_done_callback(lambda _: self._count_running(-1))  # also when cancelled
        return future

    def _count_running(self, change: int) -> None:
        with self._pool_lock:
            stats = self._speculations
            self._speculations = replace(stats, running=stats.running + change)

    def count_speculation(self, what: Literal["started", "used", "discarded"]) -> None:
        with self._pool_lock:
            stats = self._speculations
            self._speculations = replace(stats, **{what: getattr(stats, what) + 1})

    def speculation_stats(self) -> SpeculationStats:
        with self._pool_lock:
            return self._speculations

    def decode(
        self, pcm: bytes, *, word_times: bool = True, language: str | None = None
    ) -> Transcript:
        """Blocking: one utterance of mono s16le 16 kHz, word times (if asked) from its start,
        in ``language`` (None: detected by a multilingual model).

        Raises:
            UnsupportedLanguage: a language the model does not know.
            EngineError: CTranslate2 failed to decode (retryable).
        """
        return self._transcribe(
            pcm,
            language=self._model_language(language),
            task="transcribe",
            word_timestamps=word_times,
        )

    def hears(self, language: str | None) -> bool:
        if language is None or not self.multilingual:
            return super().hears(language)
        return primary_language(language) in self.info.languages

    def _model_language(self, language: str | None) -> str | None:
        """The code Whisper decodes in; None lets a multilingual model detect it."""
        if not self.hears(language):
            raise UnsupportedLanguage(
                f"the Whisper model {self.info.name} does not know the language {language!r}",
                details={"language": language, "supported": list(self.info.languages)},
            )
        if not self.multilingual:
            return "en"
        return None if language is None else primary_language(language)

    def transcribe(
        self,
        pcm16k: bytes,
        *,
        language: str | None = None,
        task: str = "transcribe",
        word_timestamps: bool = True,
    ) -> Transcript:
        """Blocking: a whole recording (any length: Whisper walks it 30 s at a time).

        ``language``: BCP-47 or ISO 639-1 ("en-US", "de"); None detects it (multilingual
        models) or means English. ``task="translate"`` gives English text from speech in
        another language.

        Raises:
            ValidationFailed: ``task`` is neither "transcribe" nor "translate".
            ModelNotInstalled: a translation asked of an English-only model.
            UnsupportedLanguage: a language the model does not know.
            EngineError: CTranslate2 failed to decode (retryable).
        """
        if task not in ("transcribe", "translate"):
            raise ValidationFailed(f'task must be "transcribe" or "translate"; got {task!r}')
        if task == "translate" and not self.multilingual:
            raise ModelNotInstalled(
                f"translation needs a multilingual Whisper model; {self.info.name} understands "
                "English only. Place a multilingual CTranslate2 Whisper model in the models "
                "directory."
            )
        return self._transcribe(
            pcm16k,
            language=self._model_language(language),
            task=task,
            word_timestamps=word_timestamps,
        )

    def _transcribe(
        self, pcm: bytes, *, language: str | None, task: str, word_timestamps: bool
    ) -> Transcript:
        samples = len(pcm) // 2
        if not samples:
            return Transcript("")
        model = self._ensure_model()
        audio = np.frombuffer(pcm[: samples * 2], dtype="<i2").astype(np.float32) / 32768.0
        seconds = samples / _RATE
        max_tokens = int(min(_MAX_NEW_TOKENS, _MIN_NEW_TOKENS + _TOKENS_PER_SECOND * seconds))
        try:
            segments, _ = model.transcribe(
                audio,
                language=language,
                task=task,
                # Greedy, one temperature: a fallback re-decode would double the latency of the
                # very utterances (noise, tones) whose text is dropped anyway.
                beam_size=1,
                best_of=1,
                temperature=0.0,
                condition_on_previous_text=False,
                word_timestamps=word_timestamps,
                vad_filter=False,
                max_new_tokens=max_tokens,
                compression_ratio_threshold=_MAX_COMPRESSION_RATIO,
                log_prob_threshold=_MIN_AVG_LOGPROB,
                no_speech_threshold=_NO_SPEECH_PROB,
            )
            # The segments are decoded lazily, as they are read: read them all in here.
            decoded = list(segments)
        except Exception as exc:
            # CTranslate2 reports a failed decode (out of memory, a CUDA error, a model it
            # could not run) as RuntimeError and the like: a provider error, worth a retry.
            raise EngineError(f"{self.name} failed to decode: {exc}", retryable=True) from exc
        texts: list[str] = []
        words: list[Word] = []
        for seg in decoded:
            if (
                seg.no_speech_prob > _NO_SPEECH_PROB
                or seg.avg_logprob < _MIN_AVG_LOGPROB
                or seg.compression_ratio > _MAX_COMPRESSION_RATIO
            ):
                continue
            text = seg.text.strip()
            if not text:
                continue
            texts.append(text)
            for w in seg.words or ():
                # Leading spaces are Whisper's word separators; punctuation stays on its word
                # (subtitles end a cue at a word that ends a sentence).
                word = w.word.strip()
                if word:
                    start = min(max(0.0, float(w.start)), seconds)
                    words.append(Word(word, start, min(max(start, float(w.end)), seconds)))
        return Transcript(" ".join(texts), tuple(words))

    def model_info(self) -> dict[str, object]:
        return {
            "name": self.info.name,
            "engine": self.name,
            "path": str(self.files.path),
            "origin": self.files.origin,
            "bytes": self.info.bytes,
            "license": self.info.license,
            "device": self.device,
            "compute_type": self.compute_type,
            "multilingual": self.multilingual,
            "languages": list(self.info.languages),
            "loaded": self._model is not None,
            "rss_bytes": self._rss_bytes,
        }


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
