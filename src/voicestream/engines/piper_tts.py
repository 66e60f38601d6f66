"""Piper (VITS) voices on ONNX Runtime: natural speech, phonemes from espeak-ng, written here.

Pipeline per request: espeak-ng IPA clause by clause (``piper_phonemes``), the voice's ids, one
model run per sentence (Piper's own granularity), float audio → s16le at a fixed gain (no
per-clause normalization: the stream layer sends clause after clause, and per-piece gain would
make the level jump between them).

Alignment. The VITS graph has no duration output, but its length regulator rounds the predicted
per-phoneme durations up (``Ceil``) and sums them into the audio length. At load time that
tensor is found in the graph and added as a second output (``onnx_graph.with_extra_output``), so
each phoneme id's frame count comes back with the audio; ``hop`` samples per frame is the product
of the decoder's upsampling strides (256 for 22.05 kHz voices), and a probe synthesis checks that
frames × hop equals the audio length before it is trusted. Word times are the span of their
phonemes' frames; ``alignment.build_alignment`` turns them into per-character times. When the
graph is not recognised, the documented estimate spreads each sentence's audio evenly over its
phoneme ids, i.e. over words in proportion to their phoneme counts. ``model_info`` says which.

Speakers. A multi-speaker voice appears as ``NAME`` (speaker 0) and ``NAME:SPEAKER`` for every
speaker in its ``speaker_id_map`` (``NAME:3`` by number when the map is empty).

Threads and devices. Sessions open lazily (``warm_up`` or first use), once, under a per-voice
lock; ``InferenceSession.run`` is thread-safe, so executor threads share a session. On a GPU
provider concurrent requests for one voice are micro-batched (``piper_batch``; window
``batch_window_ms``, default 5 ms there and off on CPU).

Bad files never take the engine down: a voice whose files fail the cheap check at construction,
or whose model fails to load, is skipped with a warning naming the file (``skipped()``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from pathlib import Path

import numpy as np
import onnxruntime as ort

from voicestream.engines._espeak_ffi import EspeakLib, load_espeak
from voicestream.engines.alignment import (
    TimedSpan,
    build_alignment,
    has_speakable,
    sanitize,
    silent_alignment,
)
from voicestream.engines.base import Synthesis, TTSEngine, Voice
from voicestream.engines.onnx_graph import OnnxNode, OnnxReadError, read_nodes, with_extra_output
from voicestream.engines.onnx_runtime import PROVIDER_NAMES, create_session, session_provider
from voicestream.engines.piper_batch import (
    BatchItem,
    FloatArray,
    IntArray,
    ItemAudio,
    MicroBatcher,
    RunGraph,
    run_padded,
)
from voicestream.engines.piper_phonemes import PhonemizedText, phonemize
from voicestream.engines.piper_voice import PiperVoiceConfig, PiperVoiceFiles, load_voice_config
from voicestream.engines.process_memory import resident_bytes
from voicestream.errors import EngineUnavailable, ModelFileError, UnknownVoice, ValidationFailed

__all__ = ["DEFAULT_GPU_BATCH_WINDOW_MS", "PiperTTS"]

log = logging.getLogger(__name__)

DEFAULT_GPU_BATCH_WINDOW_MS = 5.0
_FLOAT = 1  # TensorProto.FLOAT
_LENGTH_SCALE_RANGE = (0.25, 4.0)
_NATIVE_SPEED_RANGE = (0.5, 1.5)  # see native_speed
# Spoken once when a voice loads: a whole sentence, so the frames per phoneme id measured on it
# are those of ordinary speech (a single word's are skewed by the silences around it).
_PROBE = "Please leave your bags at the front desk."
# Without the graph's strides, the hop of every Piper voice so far (22.05 and 16 kHz alike).
_HOP_ESTIMATE = 256
# Fixed output gain: the voices peak around half scale already; a per-piece peak normalization
# would make the level jump from one streamed clause to the next.
_GAIN = 1.0
# One load at a time, so the resident-memory difference measured around it is its own.
_LOAD_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Entry:
    voice: Voice
    name: str  # the voice file's id
    speaker: int


@dataclass(slots=True)
class _Loaded:
    run: RunGraph
    provider: str
    hop: int
    durations: bool  # the graph's frame counts come back with the audio
    multi_speaker: bool
    batcher: MicroBatcher | None
    rss_bytes: int | None
    # Mean frames per phoneme id at the voice's own pace, before rounding (see native_speed).
    frames_per_id: float | None = None


class PiperTTS(TTSEngine):
    """Piper voices from ``voices`` (files checked at construction; sessions open lazily).

    Raises:
        EngineUnavailable: (from the constructor) libespeak-ng is missing, or no voice is usable.
    """

    name = "piper"

    def __init__(
        self,
        voices: Sequence[PiperVoiceFiles],
        *,
        preference: str = "auto",
        cache_dir: Path | None = None,
        threads: int = 1,
        batch_window_ms: float | None = None,
    ) -> None:
        if batch_window_ms is not None and batch_window_ms < 0:
            raise ValueError("batch_window_ms must be >= 0 (0: never batch)")
        self._espeak: EspeakLib = load_espeak()
        self._preference = preference
        self._cache_dir = cache_dir
        self._threads = threads
        self._batch_window_ms = batch_window_ms
        self._files: dict[str, PiperVoiceFiles] = {}
        self._configs: dict[str, PiperVoiceConfig] = {}
        self._skipped: list[tuple[str, str]] = []
        # Later entries win: an operator's models-dir copy overrides a packaged voice's id.
        for files in voices:
            self._add(files)
        if not self._configs:
            reasons = "; ".join(reason for _, reason in self._skipped) or "no voice files given"
            raise EngineUnavailable(f"no usable Piper voice: {reasons}")
        self._entries: dict[str, _Entry] = {}
        for name, config in self._configs.items():
            for entry in _entries(name, config, self.name):
                self._entries[entry.voice.id] = entry
        self._loaded: dict[str, _Loaded] = {}
        self._broken: set[str] = set()
        self._locks = {name: threading.Lock() for name in self._configs}
        self._state = threading.Lock()

    def _add(self, files: PiperVoiceFiles) -> None:
        try:
            config = load_voice_config(files)
        except ModelFileError as exc:
            self._skip(files.model, exc.message)
            return
        if self._espeak.phonemize([""], config.espeak_voice) is None:
            self._skip(
                files.model, f"{files.config}: espeak-ng has no voice {config.espeak_voice!r}"
            )
            return
        if config.name in self._configs:
            log.info("piper voice %s from %s replaces the one from %s", config.name,
                     files.origin, self._files[config.name].origin)  # fmt: skip
        self._files[config.name] = files
        self._configs[config.name] = config

    def _skip(self, path: Path, reason: str) -> None:
        log.warning("skipping piper voice %s: %s", path, reason)
        self._skipped.append((str(path), reason))

    # -- catalog -------------------------------------------------------------------------------

    def voices(self) -> list[Voice]:
        with self._state:
            broken = set(self._broken)
        return [e.voice for e in self._entries.values() if e.name not in broken]

    def skipped(self) -> list[tuple[str, str]]:
        """(file, reason) for every voice refused, at construction or when its model loaded.

        ``file`` is the voice's ``.onnx`` path whichever file was at fault; the reason names
        the faulty one."""
        with self._state:
            return list(self._skipped)

    def model_info(self) -> list[dict[str, object]]:
        """Per voice file: where it is from, its size, licence, and once loaded its device,
        alignment source and approximate resident memory."""
        info: list[dict[str, object]] = []
        for name, config in self._configs.items():
            files = self._files[name]
            with self._state:
                loaded = self._loaded.get(name)
                broken = name in self._broken
            info.append(
                {
                    "id": name,
                    "engine": self.name,
                    "path": str(files.model),
                    "config": str(files.config),
                    "origin": files.origin,
                    "bytes": config.model_bytes + config.config_bytes,
                    "license": config.license,
                    "language": config.language,
                    "sample_rate": config.sample_rate,
                    "speakers": config.num_speakers,
                    "loaded": loaded is not None,
                    "broken": broken,
                    "provider": loaded.provider if loaded else None,
                    "alignment": (
                        None if loaded is None else "durations" if loaded.durations else "estimate"
                    ),
                    "batch_window_ms": (
                        loaded.batcher.window_s * 1000 if loaded and loaded.batcher else None
                    ),
                    "rss_bytes": loaded.rss_bytes if loaded else None,
                }
            )
        return info

    def batch_stats(self, voice_id: str) -> tuple[int, int, int] | None:
        """(runs, items, largest batch) of a loaded voice's micro-batcher; None when it has none."""
        entry = self._entries.get(voice_id)
        with self._state:
            loaded = self._loaded.get(entry.name) if entry else None
        if loaded is None or loaded.batcher is None:
            return None
        stats = loaded.batcher.stats
        return stats.runs, stats.items, stats.largest

    # -- loading -------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Open every voice's session (off the event loop). A voice that fails is skipped.

        Raises:
            EngineUnavailable: no voice could be loaded.
        """
        for name in list(self._configs):
            try:
                self._session(name)
            except ModelFileError:
                continue  # logged and listed in skipped()
        if not self.voices():
            raise EngineUnavailable(
                "no Piper voice could be loaded: "
                + "; ".join(reason for _, reason in self.skipped())
            )

    def _session(self, name: str) -> _Loaded:
        with self._state:
            loaded = self._loaded.get(name)
            broken = name in self._broken
        if loaded is not None:
            return loaded
        files = self._files[name]
        if broken:
            raise _unloadable(name)
        with self._locks[name]:
            with self._state:
                loaded = self._loaded.get(name)
            if loaded is not None:
                return loaded
            try:
                loaded = self._load(files, self._configs[name])
            except ModelFileError as exc:
                with self._state:
                    self._broken.add(name)
                self._skip(files.model, exc.message)  # the log names the file
                raise _unloadable(name) from exc
            with self._state:
                self._loaded[name] = loaded
            return loaded

    def _load(self, files: PiperVoiceFiles, config: PiperVoiceConfig) -> _Loaded:
        def fail(reason: str) -> ModelFileError:
            return ModelFileError(f"{files.model}: {reason}", details={"file": str(files.model)})

        try:
            model = files.model.read_bytes()
            nodes = read_nodes(model)
        except (OSError, OnnxReadError) as exc:
            raise fail(f"cannot read the model ({exc})") from exc
        durations = _duration_tensor(nodes)
        hop = prod(
            n.int_lists.get("strides", (1,))[0] for n in nodes if n.op_type == "ConvTranspose"
        )
        if durations is not None and hop > 1:
            model = with_extra_output(model, durations, _FLOAT)
        else:
            log.info(
                "piper voice %s: no duration tensor found; alignment is estimated", files.model
            )
            durations = None
            hop = _HOP_ESTIMATE
        with _LOAD_LOCK:
            before = resident_bytes()
            try:
                session = create_session(
                    model,
                    preference=self._preference,
                    cache_dir=self._cache_dir,
                    intra_op_threads=self._threads,
                )
            except EngineUnavailable as exc:
                raise fail(f"ONNX Runtime cannot load it ({exc.message})") from exc
            finally:
                del model  # tens of megabytes; the session holds its own copy
            after = resident_bytes()
        provider = session_provider(session)
        outputs = [session.get_outputs()[0].name]
        if durations is not None:
            outputs.append(durations)
        multi = config.num_speakers > 1
        run = _runner(session, outputs)
        frames_per_id = None
        if durations is not None:
            frames_per_id = self._probe_frames(files, config, run, hop, multi)
        if durations is not None and frames_per_id is None:
            log.warning("piper voice %s: durations do not add up to the audio; estimating",
                        files.model)  # fmt: skip
            durations = None
            run = _runner(session, outputs[:1])
        window = self._batch_window_ms
        if window is None:
            window = 0.0 if provider == PROVIDER_NAMES["cpu"] else DEFAULT_GPU_BATCH_WINDOW_MS
        batcher = None
        if window > 0:
            batcher = MicroBatcher(
                run, hop=hop, rate=config.sample_rate, multi_speaker=multi, window_s=window / 1000
            )
        rss = after - before if before and after else None  # 0: unknown here
        log.info("piper voice %s loaded on %s (alignment from %s)", config.name, provider,
                 "durations" if durations else "an estimate")  # fmt: skip
        return _Loaded(
            run, provider, hop, durations is not None, multi, batcher, rss, frames_per_id
        )

    def _probe_frames(
        self, files: PiperVoiceFiles, config: PiperVoiceConfig, run: RunGraph, hop: int, multi: bool
    ) -> float | None:
        """Synthesize a sentence once: the first run is slow anyway (allocations), and it proves
        the graph takes Piper's inputs and that frames × hop is the audio's length. Returns the
        mean unrounded frames per phoneme id (each id's count is rounded up, so about half a
        frame less than the counts' mean), or None when the frame counts do not add up.

        Raises:
            ModelFileError: the graph does not run with Piper's inputs.
        """
        text = phonemize(self._espeak, _PROBE, config.espeak_voice, config.phoneme_ids)
        if not text.sentences:
            raise ModelFileError(
                f"{files.config}: its phoneme map covers none of {_PROBE!r}",
                details={"file": str(files.config)},
            )
        ids = np.array([text.sentences[0].ids], dtype=np.int64)
        lengths = np.array([ids.shape[1]], dtype=np.int64)
        scales = np.array([config.noise_scale, config.length_scale, config.noise_w], np.float32)
        speakers = np.zeros(1, dtype=np.int64) if multi else None
        try:
            audio, frames = run(ids, lengths, scales, speakers)
        except Exception as exc:  # onnxruntime's own exception family: a graph we cannot drive
            raise ModelFileError(
                f"{files.model}: the graph does not run with Piper's inputs ({exc})",
                details={"file": str(files.model)},
            ) from exc
        if frames is None or frames.shape != ids.shape:
            return None
        total = round(float(frames.sum()))
        if total <= 0 or total * hop != audio.shape[1]:
            return None
        return max(0.1, total / int(ids.shape[1]) - 0.5)

    # -- synthesis -----------------------------------------------------------------------------

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        return self.synthesize_with(text, voice)

    def native_speed(self, voice: Voice, speed: float) -> float:
        """The pace ``synthesize_at(…, speed)`` really speaks at, for the tempo filter to make up
        the rest.

        The voice's ``length_scale`` is divided by ``speed`` clamped to 0.5-1.5 (and to the
        0.25-4 the scale may take). Audio does not shrink in proportion: each phoneme id's
        duration is rounded up to whole frames, about half a frame more per id whatever the
        scale, and an id lasts only 1-2 frames on average. With ``c`` the voice's mean
        unrounded frames per id (measured when it loads), audio at ``s`` times the pace is
        ``(c/s + 1/2) / (c + 1/2)`` as long as at its own pace: within about 5 % on joe's
        sentences up to 1.5, drifting past it as more ids hit the one-frame floor, hence the
        clamp. A voice not loaded yet (or without frame counts) answers 1.0, so the tempo
        filter does it all.
        """
        entry = self._entries.get(voice.id)
        if entry is None or voice.engine != self.name or not speed > 0:
            return 1.0
        with self._state:
            loaded = self._loaded.get(entry.name)
        if loaded is None or loaded.frames_per_id is None:
            return 1.0
        spoken = self._paced(entry.name, speed)
        c = loaded.frames_per_id
        return (c + 0.5) / (c / spoken + 0.5)

    def _paced(self, name: str, speed: float) -> float:
        """``speed`` clamped to what this voice paces itself (see ``native_speed``)."""
        base = self._configs[name].length_scale
        low, high = _LENGTH_SCALE_RANGE
        slowest = max(_NATIVE_SPEED_RANGE[0], base / high)
        fastest = min(_NATIVE_SPEED_RANGE[1], base / low)
        return min(max(speed, slowest), fastest)

    def synthesize_at(self, text: str, voice: Voice, speed: float) -> Synthesis:
        """At ``native_speed(voice, speed)`` times the voice's own pace: its ``length_scale``
        divided by ``speed`` (clamped to 0.5-1.5).

        Raises:
            UnknownVoice, ModelFileError: as ``synthesize_with``.
        """
        entry = self._entries.get(voice.id)
        if entry is None or voice.engine != self.name or not speed > 0:
            raise UnknownVoice(f"piper has no voice {voice.id!r}", details={"voice": voice.id})
        scale = self._configs[entry.name].length_scale / self._paced(entry.name, speed)
        return self.synthesize_with(text, voice, length_scale=scale)

    def synthesize_with(
        self, text: str, voice: Voice, *, length_scale: float | None = None
    ) -> Synthesis:
        """Like ``synthesize``; ``length_scale`` above 1 speaks slower (default: the voice's).

        Raises:
            UnknownVoice: not one of this engine's voices.
            ValidationFailed: ``length_scale`` outside 0.25-4.
            ModelFileError: the voice's model failed to load.
        """
        entry = self._entries.get(voice.id)
        if entry is None or voice.engine != self.name:
            raise UnknownVoice(f"piper has no voice {voice.id!r}", details={"voice": voice.id})
        config = self._configs[entry.name]
        scale = config.length_scale if length_scale is None else float(length_scale)
        low, high = _LENGTH_SCALE_RANGE
        if not low <= scale <= high:
            raise ValidationFailed(
                f"length_scale must be from {low} to {high}", details={"length_scale": scale}
            )
        rate = config.sample_rate
        spoken = sanitize(text)
        if not has_speakable(spoken):
            return Synthesis(b"", rate, silent_alignment(text))
        phonemes = phonemize(self._espeak, spoken, config.espeak_voice, config.phoneme_ids)
        if not phonemes.sentences:
            return Synthesis(b"", rate, silent_alignment(text))
        loaded = self._session(entry.name)
        items = [BatchItem(sentence.ids, entry.speaker) for sentence in phonemes.sentences]
        scales = (config.noise_scale, scale, config.noise_w)
        if loaded.batcher is not None:
            results = loaded.batcher.synthesize(items, scales)
        else:
            # Without a batcher each sentence runs alone: padding would only waste CPU.
            results = [
                run_padded(
                    loaded.run,
                    [item],
                    scales,
                    hop=loaded.hop,
                    multi_speaker=loaded.multi_speaker,
                    rate=rate,
                )[0]
                for item in items
            ]
        audio = np.concatenate([r.audio for r in results])
        audio_ms = audio.size * 1000 / rate
        spans = _word_spans(phonemes, results, loaded.hop, rate)
        return Synthesis(_to_pcm16(audio), rate, build_alignment(text, spans, audio_ms))


def _unloadable(name: str) -> ModelFileError:
    # What a client sees: the voice, never the server's file path (the warning logged by
    # ``_skip`` and ``skipped()`` name the file for the operator).
    return ModelFileError(
        f"piper voice {name!r} failed to load; the server log names the file",
        details={"voice": name},
    )


def _entries(name: str, config: PiperVoiceConfig, engine: str) -> list[_Entry]:
    title = config.dataset.replace("_", " ").title()
    label = f"{title} ({config.language}, {config.quality or 'Piper'})"

    def voice(voice_id: str, display: str) -> Voice:
        return Voice(voice_id, display, config.language, config.gender, config.sample_rate, engine)

    entries = [_Entry(voice(name, label), name, 0)]
    if config.num_speakers > 1:
        speakers = dict(config.speakers) or {str(i): i for i in range(config.num_speakers)}
        for speaker, number in sorted(speakers.items(), key=lambda item: item[1]):
            entries.append(_Entry(voice(f"{name}:{speaker}", f"{label}, {speaker}"), name, number))
    return entries


def _duration_tensor(nodes: Sequence[OnnxNode]) -> str | None:
    """The rounded per-phoneme frame counts: the output of the one ``Ceil`` that feeds both a
    ``ReduceSum`` (the audio length) and a ``CumSum`` (the alignment path) in a VITS graph."""
    users: dict[str, set[str]] = {}
    for node in nodes:
        for name in node.inputs:
            users.setdefault(name, set()).add(node.op_type)
    found = [
        node.outputs[0]
        for node in nodes
        if node.op_type == "Ceil"
        and node.outputs
        and {"ReduceSum", "CumSum"} <= users.get(node.outputs[0], set())
    ]
    return found[0] if len(found) == 1 else None


def _runner(session: ort.InferenceSession, outputs: list[str]) -> RunGraph:
    def run(
        ids: IntArray, lengths: IntArray, scales: FloatArray, speakers: IntArray | None
    ) -> tuple[FloatArray, FloatArray | None]:
        feeds = {"input": ids, "input_lengths": lengths, "scales": scales}
        if speakers is not None:
            feeds["sid"] = speakers
        found = session.run(outputs, feeds)
        batch = ids.shape[0]
        audio = np.asarray(found[0], dtype=np.float32).reshape(batch, -1)
        if len(found) < 2:
            return audio, None
        return audio, np.asarray(found[1], dtype=np.float32).reshape(batch, -1)

    return run


def _word_spans(
    phonemes: PhonemizedText, results: Sequence[ItemAudio], hop: int, rate: int
) -> list[TimedSpan]:
    """Each word's time: from its first phoneme id's first frame to its last id's last frame.

    Without the graph's frame counts each id gets an equal share of its sentence's audio.
    """
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    offset_ms = 0.0
    for sentence, result in zip(phonemes.sentences, results, strict=True):
        sentence_ms = result.audio.size * 1000 / rate
        if result.frames is not None and result.frames.size == len(sentence.ids):
            ms = result.frames.astype(np.float64) * hop * 1000 / rate
        else:
            ms = np.full(len(sentence.ids), sentence_ms / max(1, len(sentence.ids)))
        ends = np.cumsum(ms) + offset_ms
        starts = ends - ms
        for owner, start, end in zip(sentence.owners, starts.tolist(), ends.tolist(), strict=True):
            if owner < 0:
                continue
            first.setdefault(owner, start)
            last[owner] = end
        offset_ms += sentence_ms
    spans = []
    for owner in sorted(first):
        start_char, end_char = phonemes.words[owner]
        spans.append(TimedSpan(start_char, end_char, first[owner], last[owner]))
    return spans


def _to_pcm16(audio: FloatArray) -> bytes:
    clipped = np.clip(audio * _GAIN, -1.0, 1.0)
    return bytes((clipped * 32767.0).astype("<i2").tobytes())
