"""The one place ONNX Runtime sessions are made: provider choice, caches and threading.

Providers are tried fastest first (TensorRT, CUDA, CPU) among those the installed onnxruntime
build offers; CPU is always appended so a session opens even on a machine without a GPU.
TensorRT compiles an engine per model and shape on first use (seconds to minutes), so its engine
and timing caches are kept on disk and later starts reuse them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import onnxruntime as ort

from voicestream.errors import EngineUnavailable

__all__ = [
    "PROVIDER_NAMES",
    "ProviderSpec",
    "create_session",
    "select_providers",
    "session_provider",
]

log = logging.getLogger(__name__)

ProviderSpec: TypeAlias = str | tuple[str, dict[str, Any]]

PROVIDER_NAMES: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_AUTO = ("tensorrt", "cuda", "cpu")
_CPU = PROVIDER_NAMES["cpu"]


def select_providers(
    preference: str = "auto",
    available: Sequence[str] | None = None,
    *,
    cache_dir: Path | None = None,
    device_id: int = 0,
) -> list[ProviderSpec]:
    """Order the providers to ask ONNX Runtime for.

    Args:
        preference: ``"auto"`` or a comma list of ``tensorrt``, ``cuda``, ``cpu`` (the form of
            ``Settings.onnx_providers``); ``auto`` in a list stands for all three in order.
        available: provider names to choose from; default what onnxruntime reports.
        cache_dir: where TensorRT keeps compiled engines and timing data (created). Without it
            TensorRT recompiles on every start.
        device_id: the GPU to use.

    Raises:
        ValueError: an unknown provider name in ``preference``.
    """
    wanted: list[str] = []
    for raw in preference.split(","):
        key = raw.strip().lower()
        if not key:
            continue
        if key == "auto":
            wanted.extend(_AUTO)
        elif key in PROVIDER_NAMES:
            wanted.append(key)
        else:
            raise ValueError(
                f"unknown ONNX provider {raw.strip()!r}; use auto or tensorrt,cuda,cpu"
            )
    if not wanted:
        raise ValueError("empty ONNX provider preference; use auto or tensorrt,cuda,cpu")
    offered = set(ort.get_available_providers() if available is None else available)
    chosen: list[ProviderSpec] = []
    seen: set[str] = set()
    for key in wanted:
        name = PROVIDER_NAMES[key]
        if name == _CPU or name in seen or name not in offered:
            continue
        seen.add(name)
        chosen.append(_with_options(key, cache_dir, device_id))
    # CPU last whatever the order asked: a GPU provider listed after it would never be used.
    chosen.append(_CPU)
    return chosen


def _with_options(key: str, cache_dir: Path | None, device_id: int) -> ProviderSpec:
    name = PROVIDER_NAMES[key]
    if key == "tensorrt":
        options: dict[str, Any] = {"device_id": device_id, "trt_fp16_enable": True}
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            options.update(
                trt_engine_cache_enable=True,
                trt_engine_cache_path=str(cache_dir),
                trt_timing_cache_enable=True,
                trt_timing_cache_path=str(cache_dir),
            )
        return (name, options)
    return (name, {"device_id": device_id})


def create_session(
    model_path: Path | bytes,
    *,
    preference: str = "auto",
    cache_dir: Path | None = None,
    intra_op_threads: int = 1,
) -> ort.InferenceSession:
    """Open ``model_path`` (or a serialized model, e.g. one with extra outputs) on the best
    available provider.

    One intra-op thread by default: the server runs many small inferences from several executor
    threads at once, and a thread pool per session would oversubscribe the cores.

    Raises:
        ValueError: bad ``preference``.
        EngineUnavailable: the model is missing or ONNX Runtime cannot load it.
    """
    providers = select_providers(preference, cache_dir=cache_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, intra_op_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: provider fallbacks are logged by us below
    # Spinning worker threads would burn a core between calls that flite and pocketsphinx need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model_path if isinstance(model_path, bytes) else str(model_path)
    what = "in-memory model" if isinstance(model_path, bytes) else str(model_path)
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped exception family
        raise EngineUnavailable(f"cannot load ONNX model {what}: {exc}") from exc
    log.info("onnx model %s runs on %s", Path(what).name, session_provider(session))
    return session


def session_provider(session: ort.InferenceSession) -> str:
    """The provider a session actually runs on (the first one ONNX Runtime accepted)."""
    providers: list[str] = session.get_providers()
    return providers[0]
