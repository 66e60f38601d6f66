"""Piper voice files for the tests: copies of the packaged voice under other names, broken ones,
and tiny generated graphs with Piper's inputs (plain functions, not fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from voicestream.engines.piper_voice import PiperVoiceFiles, packaged_voices

TINY_HOP = 64


def joe() -> PiperVoiceFiles:
    (files,) = packaged_voices()
    return files


def joe_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(joe().config.read_text(encoding="utf-8"))
    return config


def voice_copy(
    folder: Path, name: str, *, config: dict[str, Any] | None = None, model: bytes | None = None
) -> PiperVoiceFiles:
    """``NAME.onnx`` (a link to the packaged graph, or ``model``) and ``NAME.onnx.json``."""
    onnx_path = folder / f"{name}.onnx"
    if model is None:
        onnx_path.symlink_to(joe().model)
    else:
        onnx_path.write_bytes(model)
    json_path = folder / f"{name}.onnx.json"
    json_path.write_text(json.dumps(joe_config() if config is None else config), encoding="utf-8")
    return PiperVoiceFiles(onnx_path, json_path, "models dir")


def tiny_graph(*, speakers: bool, broken_op: bool = False) -> bytes:
    """A stand-in for a VITS graph with Piper's inputs and output shape: each phoneme id becomes
    ``TINY_HOP`` samples of a level set by the id (plus the speaker id), with no duration tensor,
    so the engine must fall back to its estimated alignment. ``broken_op``: a node ONNX Runtime
    does not know, so the file passes the cheap checks and fails to load."""
    nodes = [
        helper.make_node("Cast", ["input"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "step"], ["level"]),
    ]
    if speakers:
        nodes += [
            helper.make_node("Cast", ["sid"], ["sid_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["sid_f", "axis1"], ["sid_col"]),
            helper.make_node("Mul", ["sid_col", "speaker_step"], ["offset"]),
            helper.make_node("Add", ["level", "offset"], ["voiced"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["level"], ["voiced"]))
    nodes += [
        helper.make_node("Unsqueeze", ["voiced", "axes12"], ["framed"]),
        helper.make_node("Tile", ["framed", "repeats"], ["output"]),
    ]
    if broken_op:
        nodes.append(helper.make_node("NoSuchOperator", ["output"], ["unused"], domain="bogus"))
    inputs = [
        helper.make_tensor_value_info("input", TensorProto.INT64, ["batch", "phonemes"]),
        helper.make_tensor_value_info("input_lengths", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
    ]
    if speakers:
        inputs.append(helper.make_tensor_value_info("sid", TensorProto.INT64, ["batch"]))
    initializers = [
        helper.make_tensor("step", TensorProto.FLOAT, [], [0.002]),
        helper.make_tensor("speaker_step", TensorProto.FLOAT, [], [0.1]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("axes12", TensorProto.INT64, [2], [1, 2]),
        helper.make_tensor("repeats", TensorProto.INT64, [4], [1, 1, 1, TINY_HOP]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_piper",
        inputs,
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1, 1, "samples"])],
        initializer=initializers,
    )
    opsets = [helper.make_opsetid("", 17)] + (
        [helper.make_opsetid("bogus", 1)] if broken_op else []
    )
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    return bytes(model.SerializeToString())


def tiny_config(*, speakers: dict[str, int] | None) -> dict[str, Any]:
    config = joe_config()
    config.update(
        audio={"sample_rate": 16000, "quality": "x_low"},
        num_speakers=len(speakers) if speakers else 1,
        speaker_id_map=speakers or {},
        dataset="tiny",
    )
    return config


def check_onnx(model: bytes) -> None:
    onnx.checker.check_model(onnx.load_from_string(model))
