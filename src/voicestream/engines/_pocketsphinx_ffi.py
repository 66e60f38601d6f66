"""ctypes binding to the C API inside the ``pocketsphinx`` wheel's extension module.

Why not the package's Python ``Decoder``: its Cython methods keep the GIL while decoding, so two
streams on two executor threads decode one after the other, and every 100 ms chunk stalls the
event loop for ~8 ms. The same library called through ctypes releases the GIL: decoders on
different threads run truly in parallel. Same code, same bundled en-us model, same results.
The Python extension module itself is never imported: only its shared object is loaded.

Releasing the GIL also means nothing serializes calls any more, and pocketsphinx has no locks
of its own: a decoder driven from two threads, or used after ``ps_free``, crashes the process.
So the only way to a decoder is ``NativeDecoder``, which checks on every call, under its own
lock, that the decoder is alive and that the caller holds it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import threading
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from voicestream.errors import EngineError, EngineUnavailable

__all__ = ["DecoderGone", "NativeDecoder", "PocketsphinxLib", "Segment", "load_pocketsphinx"]

_P = ctypes.c_void_p


class Segment:
    """One entry of ``ps_seg_iter``: a word (or filler) and its inclusive frame range."""

    __slots__ = ("end_frame", "start_frame", "word")

    def __init__(self, word: str, start_frame: int, end_frame: int) -> None:
        self.word = word
        self.start_frame = start_frame
        self.end_frame = end_frame


class DecoderGone(EngineError):
    """A decoder was used after it was freed, or by a holder that gave it back.

    Raised instead of calling into C: pocketsphinx dereferences a freed decoder and crashes
    the whole process (every session with it), so no such call may ever reach the library.
    """


class NativeDecoder:
    """One ``ps_decoder_t``, safe against any caller.

    Every C call runs under this decoder's lock, so two threads never drive it at once (the
    library has no locking of its own); after ``free`` every call raises ``DecoderGone``; and
    while the decoder is lent (``lend``) only its current holder may use it, so a holder that
    gave it back and still has a job in flight cannot touch it while someone else holds it.
    """

    def __init__(self, lib: ctypes.CDLL, options: dict[str, Any]) -> None:
        """Slow (model loading).

        Raises:
            EngineUnavailable: pocketsphinx rejected the configuration or the model.
        """
        self._lib = lib
        self._lock = threading.Lock()
        self._owner: object | None = None
        config = lib.ps_config_parse_json(None, json.dumps(options).encode())
        if not config:
            raise EngineUnavailable("pocketsphinx rejected its configuration")
        decoder = lib.ps_init(config)
        if not decoder:
            lib.ps_config_free(config)
            raise EngineUnavailable("pocketsphinx could not load its model")
        self._decoder: int = decoder
        self._config: int = config

    @property
    def freed(self) -> bool:
        return not self._decoder

    def lend(self, owner: object) -> None:
        """From now on only ``owner`` may use the decoder (waits for a call in flight)."""
        with self._lock:
            self._owner = owner

    def take_back(self, owner: object) -> None:
        """``owner`` is done with the decoder; a call it still makes raises ``DecoderGone``.

        Raises:
            DecoderGone: ``owner`` does not hold the decoder (given back twice).
        """
        with self._lock:
            if self._owner is not owner:
                raise DecoderGone("this speech decoder is not held by whoever gives it back")
            self._owner = None

    def free(self) -> None:
        """Free the C decoder; idempotent. Waits for a call in flight, never interrupts it."""
        with self._lock:
            decoder, config, self._decoder, self._config = self._decoder, self._config, 0, 0
            self._owner = None
            if decoder:
                # ps_init keeps its own reference to the config, so both frees are needed.
                self._lib.ps_free(decoder)
                self._lib.ps_config_free(config)

    @contextmanager
    def _use(self, owner: object | None) -> Iterator[int]:
        with self._lock:
            if not self._decoder:
                raise DecoderGone("this speech decoder was freed")
            if owner is not self._owner:
                raise DecoderGone("this speech decoder was given back")
            yield self._decoder

    def start_utt(self, owner: object | None) -> None:
        with self._use(owner) as decoder:
            if self._lib.ps_start_utt(decoder) < 0:
                raise RuntimeError("ps_start_utt failed")

    def process_raw(self, owner: object | None, pcm: bytes) -> None:
        with self._use(owner) as decoder:
            if self._lib.ps_process_raw(decoder, pcm, len(pcm) // 2, 0, 0) < 0:
                raise RuntimeError("ps_process_raw failed")

    def end_utt(self, owner: object | None) -> None:
        with self._use(owner) as decoder:
            if self._lib.ps_end_utt(decoder) < 0:
                raise RuntimeError("ps_end_utt failed")

    def get_cmn(self, owner: object | None) -> bytes:
        """The cepstral-mean estimate the decoder has adapted to, as pocketsphinx prints it."""
        with self._use(owner) as decoder:
            raw: bytes | None = self._lib.ps_get_cmn(decoder, 0)
            return raw or b""

    def set_cmn(self, owner: object | None, cmn: bytes) -> None:
        with self._use(owner) as decoder:
            if self._lib.ps_set_cmn(decoder, cmn) < 0:
                raise RuntimeError("ps_set_cmn failed")

    def reset_noise(self, owner: object | None) -> None:
        """Forget the noise estimate (pocketsphinx keeps it across utterances and borrowers)."""
        with self._use(owner) as decoder:
            if self._lib.ps_start_stream(decoder) < 0:
                raise RuntimeError("ps_start_stream failed")

    def cepstral_mean(self, owner: object | None, pcm: bytes) -> bytes:
        """The mean cepstrum of ``pcm`` through this decoder's front end, in ``set_cmn`` form.

        Frames with negative log energy are left out, as pocketsphinx's own CMN leaves them
        out. b"" when the audio has no such frame (silence, or too short for one frame).
        Leaves the front end's noise estimate changed: call ``reset_noise`` after it.
        """
        samples = array("h", pcm[: len(pcm) - len(pcm) % 2])
        with self._use(owner) as decoder:
            fe = self._lib.ps_get_fe(decoder)
            width = self._lib.fe_get_output_size(fe)
            if not samples or self._lib.fe_start_utt(fe) < 0:
                return b""
            n_samples = ctypes.c_size_t(len(samples))
            n_frames = ctypes.c_int32(0)
            base = (ctypes.c_int16 * len(samples)).from_buffer(samples)
            cursor = ctypes.cast(base, ctypes.POINTER(ctypes.c_int16))
            # Without an output buffer the call only reports how many frames the audio makes.
            self._lib.fe_process_frames_int16(fe, cursor, n_samples, None, n_frames)
            rows = n_frames.value + 1  # + the partial frame fe_end_utt may flush
            cep = (ctypes.c_float * (rows * width))()
            row_ptrs = (ctypes.POINTER(ctypes.c_float) * rows)(
                *(
                    ctypes.cast(ctypes.byref(cep, i * width * 4), ctypes.POINTER(ctypes.c_float))
                    for i in range(rows)
                )
            )
            n_frames.value = rows
            self._lib.fe_process_frames_int16(fe, cursor, n_samples, row_ptrs, n_frames)
            done = n_frames.value
            tail = ctypes.c_int32(0)
            self._lib.fe_end_utt(fe, row_ptrs[min(done, rows - 1)], tail)
            done += tail.value
        frames = np.frombuffer(cep, dtype=np.float32).reshape(rows, width)[:done]
        voiced = frames[frames[:, 0] >= 0]
        if not len(voiced):
            return b""
        return ",".join(f"{x:.6g}" for x in voiced.mean(axis=0, dtype=np.float64)).encode()

    def hyp(self, owner: object | None) -> str:
        with self._use(owner) as decoder:
            raw: bytes | None = self._lib.ps_get_hyp(decoder, None)
        return "" if raw is None else raw.decode("utf-8", "replace")

    def segments(self, owner: object | None) -> list[Segment]:
        out: list[Segment] = []
        start, end = ctypes.c_int(), ctypes.c_int()
        with self._use(owner) as decoder:
            seg = self._lib.ps_seg_iter(decoder)
            while seg:
                word: bytes | None = self._lib.ps_seg_word(seg)
                self._lib.ps_seg_frames(seg, ctypes.byref(start), ctypes.byref(end))
                text = (word or b"").decode("utf-8", "replace")
                out.append(Segment(text, start.value, end.value))
                seg = self._lib.ps_seg_next(seg)  # frees the iterator when it returns NULL
        return out


class PocketsphinxLib:
    """The loaded library plus the bundled model's location."""

    def __init__(self, lib: ctypes.CDLL, model_dir: Path) -> None:
        self._lib = lib
        self.model_dir = model_dir

    def new_decoder(self, options: dict[str, Any]) -> NativeDecoder:
        """Slow (model loading).

        Raises:
            EngineUnavailable: pocketsphinx rejected the configuration or the model.
        """
        return NativeDecoder(self._lib, options)


_lock = threading.Lock()
_loaded: list[PocketsphinxLib] = []


def load_pocketsphinx() -> PocketsphinxLib:
    """Locate and bind the pocketsphinx shared object once per process.

    Raises:
        EngineUnavailable: the ``pocketsphinx`` package or its model is not installed.
    """
    with _lock:
        if not _loaded:
            _loaded.append(_load())
        return _loaded[0]


def _load() -> PocketsphinxLib:
    spec = importlib.util.find_spec("pocketsphinx")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable("the pocketsphinx package is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    shared = sorted(package.glob("_pocketsphinx*.so"))
    model_dir = package / "model" / "en-us"
    if not shared or not model_dir.is_dir():
        raise EngineUnavailable(f"pocketsphinx library or en-us model missing under {package}")
    try:
        lib = ctypes.CDLL(str(shared[0]))
        _declare(lib)
    except (OSError, AttributeError) as exc:
        raise EngineUnavailable(f"pocketsphinx is not usable: {exc}") from exc
    return PocketsphinxLib(lib, model_dir)


def _declare(lib: ctypes.CDLL) -> None:
    sigs: dict[str, tuple[object, tuple[object, ...]]] = {
        "ps_config_parse_json": (_P, (_P, ctypes.c_char_p)),
        "ps_config_free": (ctypes.c_int, (_P,)),
        "ps_init": (_P, (_P,)),
        "ps_free": (ctypes.c_int, (_P,)),
        "ps_start_utt": (ctypes.c_int, (_P,)),
        "ps_process_raw": (
            ctypes.c_int,
            (_P, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int),
        ),
        "ps_end_utt": (ctypes.c_int, (_P,)),
        "ps_get_hyp": (ctypes.c_char_p, (_P, ctypes.POINTER(ctypes.c_int32))),
        "ps_get_cmn": (ctypes.c_char_p, (_P, ctypes.c_int)),
        "ps_set_cmn": (ctypes.c_int, (_P, ctypes.c_char_p)),
        "ps_start_stream": (ctypes.c_int, (_P,)),
        "ps_get_fe": (_P, (_P,)),
        "fe_start_utt": (ctypes.c_int, (_P,)),
        "fe_get_output_size": (ctypes.c_int, (_P,)),
        "fe_process_frames_int16": (
            ctypes.c_int,
            (
                _P,
                ctypes.POINTER(ctypes.POINTER(ctypes.c_int16)),
                ctypes.POINTER(ctypes.c_size_t),
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_int32),
            ),
        ),
        "fe_end_utt": (
            ctypes.c_int,
            (_P, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int32)),
        ),
        "ps_seg_iter": (_P, (_P,)),
        "ps_seg_next": (_P, (_P,)),
        "ps_seg_word": (ctypes.c_char_p, (_P,)),
        "ps_seg_frames": (None, (_P, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))),
    }
    for name, (restype, argtypes) in sigs.items():
        func = getattr(lib, name)
        func.restype = restype
        func.argtypes = argtypes
