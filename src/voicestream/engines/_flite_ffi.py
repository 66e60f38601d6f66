"""ctypes binding to the system flite 2.x libraries (Debian ``libflite1``).

Only what ``flite_tts`` needs: load the libraries once per process, register the voices, and
synthesize an utterance whose wave and Token/Word/Segment relations we read. Calls through
``ctypes.CDLL`` release the GIL, so synthesis on several executor threads runs in parallel.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path

from voicestream.errors import EngineUnavailable

__all__ = ["FLITE_VOICES", "CstWave", "FliteLib", "load_flite"]

_LIB_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu"),
    Path("/usr/lib/aarch64-linux-gnu"),
    Path("/usr/lib"),
)
# Order matters: each library resolves symbols from the ones loaded before it, which only works
# when those were loaded RTLD_GLOBAL.
_BASE_LIBS = ("libflite.so.1", "libflite_usenglish.so.1", "libflite_cmulex.so.1")
FLITE_VOICES = ("slt", "rms", "awb", "kal16")

_P = ctypes.c_void_p


class CstWave(ctypes.Structure):
    """``cst_wave`` from ``flite/cst_wave.h``."""

    _fields_ = (
        ("type", ctypes.c_char_p),
        ("sample_rate", ctypes.c_int),
        ("num_samples", ctypes.c_int),
        ("num_channels", ctypes.c_int),
        ("samples", ctypes.POINTER(ctypes.c_short)),
    )


@dataclass(frozen=True, slots=True)
class FliteLib:
    """The loaded library and one registered ``cst_voice*`` per voice id."""

    lib: ctypes.CDLL
    voices: dict[str, int]


_lock = threading.Lock()
_loaded: FliteLib | None = None
# Keep every CDLL alive for the life of the process; unloading a voice library would leave
# dangling voice pointers behind.
_keep: list[ctypes.CDLL] = []


def load_flite() -> FliteLib:
    """Load flite and register its voices once per process (thread-safe, idempotent).

    Raises:
        EngineUnavailable: a flite library or voice is missing.
    """
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def _open(name: str) -> ctypes.CDLL:
    for directory in _LIB_DIRS:
        path = directory / name
        if path.exists():
            return ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    # Fall back to the dynamic loader's own search path (other distributions, LD_LIBRARY_PATH).
    return ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)


def _load() -> FliteLib:
    try:
        libs = [_open(name) for name in _BASE_LIBS]
        flite = libs[0]
        _declare(flite)
        flite.flite_init()
        voices: dict[str, int] = {}
        for voice_id in FLITE_VOICES:
            voice_lib = _open(f"libflite_cmu_us_{voice_id}.so.1")
            libs.append(voice_lib)
            register = getattr(voice_lib, f"register_cmu_us_{voice_id}")
            register.restype = _P
            register.argtypes = (ctypes.c_char_p,)
            pointer = register(None)
            if not pointer:
                raise OSError(f"register_cmu_us_{voice_id} returned NULL")
            voices[voice_id] = int(pointer)
    except (OSError, AttributeError) as exc:
        raise EngineUnavailable(f"flite is not usable: {exc}") from exc
    _keep.extend(libs)
    return FliteLib(lib=flite, voices=voices)


def _declare(lib: ctypes.CDLL) -> None:
    """Declare the signatures we call; without them ctypes would truncate pointers to int."""
    sigs: dict[str, tuple[object, tuple[object, ...]]] = {
        "flite_init": (ctypes.c_int, ()),
        "flite_synth_text": (_P, (ctypes.c_char_p, _P)),
        "delete_utterance": (None, (_P,)),
        "utt_wave": (ctypes.POINTER(CstWave), (_P,)),
        "utt_relation": (_P, (_P, ctypes.c_char_p)),
        "utt_relation_present": (ctypes.c_int, (_P, ctypes.c_char_p)),
        "relation_head": (_P, (_P,)),
        "item_next": (_P, (_P,)),
        "item_prev": (_P, (_P,)),
        "item_daughter": (_P, (_P,)),
        "item_feat_present": (ctypes.c_int, (_P, ctypes.c_char_p)),
        "item_feat_string": (ctypes.c_char_p, (_P, ctypes.c_char_p)),
        "item_feat_float": (ctypes.c_float, (_P, ctypes.c_char_p)),
        "path_to_item": (_P, (_P, ctypes.c_char_p)),
    }
    for name, (restype, argtypes) in sigs.items():
        func = getattr(lib, name)
        func.restype = restype
        func.argtypes = argtypes
