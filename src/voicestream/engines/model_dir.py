"""The model directory (``VOICESTREAM_MODELS_DIR``): Piper voices and CTranslate2 Whisper models
an operator dropped in, found at start-up.

What counts as what:

- ``NAME.onnx`` with ``NAME.onnx.json`` beside it is a Piper voice whose id is ``NAME``.
- A folder holding ``model.bin`` (a CTranslate2 model: ``config.json``, ``tokenizer.json`` and a
  ``vocabulary.*`` with it) is a Whisper model whose name is the folder's name.
- Voices may sit in sub-folders (``models/voices/de_DE-thorsten-medium.onnx``); a Whisper
  folder is not searched further. Hidden files, READMEs and anything else are ignored.

Only cheap checks happen here (file pairs, the voice's JSON and graph inputs through
``piper_voice.load_voice_config``, a Whisper folder with every file it needs); the engines
check the rest when they load.
Whatever fails is returned as a ``ModelProblem`` naming the file, and skipped: a bad file in
the models directory never stops the server.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from voicestream.engines.whisper_model_files import inspect_whisper_dir
from voicestream.errors import ModelFileError

__all__ = [
    "DirVoice",
    "DirWhisper",
    "ModelDirScan",
    "ModelProblem",
    "scan",
]

log = logging.getLogger(__name__)

_MAX_DEPTH = 3  # models/, models/voices/, models/voices/de/: deep enough, never a whole disk
_WHISPER_VOCABULARIES = ("tokenizer.json", "vocabulary.txt", "vocabulary.json")


@dataclass(frozen=True, slots=True)
class ModelProblem:
    """A model file that was skipped, and why (shown to operators by name)."""

    file: str
    reason: str

    @classmethod
    def of(cls, file: str, message: str) -> ModelProblem:
        """From an engine's message, which often starts with the file name already."""
        return cls(file, message.removeprefix(f"{file}: ").strip() or message)


@dataclass(frozen=True, slots=True)
class DirVoice:
    name: str  # the voice id: the file name without ``.onnx``
    model: Path
    config: Path


@dataclass(frozen=True, slots=True)
class DirWhisper:
    name: str  # the folder's name, e.g. "large-v3-turbo"
    path: Path


@dataclass(frozen=True, slots=True)
class ModelDirScan:
    root: Path
    voices: tuple[DirVoice, ...] = ()
    whisper: tuple[DirWhisper, ...] = ()
    problems: tuple[ModelProblem, ...] = ()


def scan(models_dir: Path) -> ModelDirScan:
    """Find the voices and Whisper models under ``models_dir`` (resolved from the working
    directory when relative). Blocking file I/O; a missing folder is an empty one."""
    root = models_dir.expanduser().resolve()
    if not root.exists():
        log.info("models directory %s does not exist: no models from it", root)
        return ModelDirScan(root)
    if not root.is_dir():
        return ModelDirScan(root, problems=(ModelProblem(str(root), "is not a folder"),))
    voices: list[DirVoice] = []
    whisper: list[DirWhisper] = []
    problems: list[ModelProblem] = []
    voice_ids: dict[str, Path] = {}
    whisper_names: dict[str, Path] = {}
    for folder in _whisper_folders(root):
        problem = _check_whisper(folder)
        if problem is None and folder.name in whisper_names:
            problem = ModelProblem(
                str(folder),
                f"a Whisper model named {folder.name!r} is already at "
                f"{whisper_names[folder.name]}; rename one folder",
            )
        if problem is not None:
            problems.append(problem)
            continue
        whisper_names[folder.name] = folder
        whisper.append(DirWhisper(folder.name, folder))
    for model, config in _voice_files(root, set(whisper_names.values()), problems):
        name = model.name.removesuffix(".onnx")
        problem = _check_voice(model, config)
        if problem is None and name in voice_ids:
            problem = ModelProblem(
                str(model),
                f"a voice with id {name!r} is already at {voice_ids[name]}; "
                "voice ids must be unique",
            )
        if problem is not None:
            problems.append(problem)
            continue
        voice_ids[name] = model
        voices.append(DirVoice(name, model, config))
    return ModelDirScan(root, tuple(voices), tuple(whisper), tuple(problems))


# ---------------------------------------------------------------------------- walking


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Folders under ``root`` (sorted, so results are stable), hidden names left out."""
    for current, dirs, files in os.walk(root, followlinks=True):
        here = Path(current)
        depth = len(here.relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < _MAX_DEPTH else []
        yield here, dirs, sorted(f for f in files if not f.startswith("."))


def _whisper_folders(root: Path) -> list[Path]:
    found: list[Path] = []
    for here, dirs, files in _walk(root):
        if here != root and "model.bin" in files:
            found.append(here)
            dirs[:] = []  # its own files, not more models
        elif (
            here != root
            and "config.json" in files
            and any(v in files for v in _WHISPER_VOCABULARIES)
        ):
            found.append(here)  # a model folder missing its weights: reported, not ignored
            dirs[:] = []
    return found


def _voice_files(
    root: Path, skip: set[Path], problems: list[ModelProblem]
) -> Iterator[tuple[Path, Path]]:
    for here, dirs, files in _walk(root):
        dirs[:] = [d for d in dirs if here / d not in skip]
        names = set(files)
        for name in files:
            if name.endswith(".onnx"):
                yield here / name, here / f"{name}.json"
            elif name.endswith(".onnx.json") and name.removesuffix(".json") not in names:
                problems.append(
                    ModelProblem(
                        str(here / name),
                        f"voice config without its model: {name.removesuffix('.json')} is missing",
                    )
                )


# ---------------------------------------------------------------------------- checks


def _check_voice(model: Path, config: Path) -> ModelProblem | None:
    # The voice's own loader checks what a Piper voice needs (one set of rules, not two).
    from voicestream.engines.piper_voice import PiperVoiceFiles, load_voice_config

    if not config.is_file():
        return ModelProblem(str(model), f"Piper voice without its config: {config.name} is missing")
    try:
        load_voice_config(PiperVoiceFiles(model, config, f"models dir {model}"))
    except ModelFileError as exc:
        return ModelProblem.of(str(exc.details.get("file", model)), exc.message)
    return None


def _check_whisper(folder: Path) -> ModelProblem | None:
    # The engine's own check of a Whisper folder (one set of rules, not two).
    try:
        inspect_whisper_dir(folder)
    except ModelFileError as exc:
        return ModelProblem.of(str(exc.details.get("file", folder)), exc.message)
    return None
