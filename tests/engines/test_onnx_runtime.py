"""The ONNX Runtime session factory: provider order, TensorRT caches, real tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from voicestream.engines.onnx_runtime import create_session, select_providers, session_provider
from voicestream.errors import EngineUnavailable

_ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    # IR 8 / opset 17: old enough for any onnxruntime >= 1.18 the project supports.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def affine_model(tmp_path: Path) -> Path:
    """y = x * 2 + 1"""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["doubled"]),
            helper.make_node("Add", ["doubled", "one"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        initializer=[
            numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        ],
    )
    return _save(graph, tmp_path / "affine.onnx")


_WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


@pytest.fixture
def matmul_model(tmp_path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[numpy_helper.from_array(_WEIGHTS, "w")],
    )
    return _save(graph, tmp_path / "matmul.onnx")


def test_affine_model_on_cpu(affine_model: Path) -> None:
    session = create_session(affine_model, preference="cpu")
    assert session_provider(session) == "CPUExecutionProvider"
    x = np.array([0.0, 1.5, -2.0, 10.0], dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, x * 2 + 1)


def test_matmul_model_with_auto_preference(matmul_model: Path) -> None:
    session = create_session(matmul_model, intra_op_threads=2)  # "auto": whatever is here
    x = np.array([[1, 2, 3, 4], [-1, 0, 0.5, 2]], dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, x @ _WEIGHTS, rtol=1e-5)


def test_missing_model_is_engine_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable):
        create_session(tmp_path / "absent.onnx", preference="cpu")


def test_auto_orders_gpu_first_with_tensorrt_caches(tmp_path: Path) -> None:
    cache = tmp_path / "trt" / "cache"
    providers = select_providers("auto", _ALL, cache_dir=cache, device_id=1)
    names = [p if isinstance(p, str) else p[0] for p in providers]
    assert names == _ALL
    trt = providers[0]
    assert isinstance(trt, tuple)
    options = trt[1]
    assert options["trt_engine_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(cache)
    assert options["trt_timing_cache_enable"] is True
    assert options["trt_fp16_enable"] is True
    assert options["device_id"] == 1
    assert cache.is_dir()
    assert providers[1] == ("CUDAExecutionProvider", {"device_id": 1})


def test_only_cpu_available() -> None:
    assert select_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert select_providers("tensorrt,cuda", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_explicit_list_is_honoured_with_cpu_last() -> None:
    providers = select_providers("cpu,cuda", _ALL)
    assert providers == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert select_providers(" CUDA , cuda ", _ALL)[0] == (
        "CUDAExecutionProvider",
        {"device_id": 0},
    )


@pytest.mark.parametrize("preference", ["rocm", "tensorrt,npu", "", " , "])
def test_unknown_preference(preference: str) -> None:
    with pytest.raises(ValueError, match="provider"):
        select_providers(preference, _ALL)


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="no CUDA-enabled onnxruntime here",
)
def test_gpu_session_and_tensorrt_engine_cache(matmul_model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "trt-cache"
    session = create_session(matmul_model, preference="tensorrt,cuda", cache_dir=cache)
    provider = session_provider(session)
    assert provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    x = np.ones((2, 4), dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, x @ _WEIGHTS, rtol=1e-2)  # fp16 under TensorRT
    if provider == "TensorrtExecutionProvider":
        assert any(p.suffix == ".engine" for p in cache.rglob("*")), list(cache.rglob("*"))
