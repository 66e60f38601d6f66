"""The models directory: what counts as a voice or a Whisper model, and what is skipped why."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from model_files import JOE_CONFIG, JOE_MODEL, TINY_EN, add_voice, add_whisper, make_models_dir
from voicestream.engines.model_dir import scan


def test_a_missing_folder_is_an_empty_one(tmp_path: Path) -> None:
    found = scan(tmp_path / "nowhere")
    assert (found.voices, found.whisper, found.problems) == ((), (), ())


def test_a_file_instead_of_a_folder_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("oops")
    (problem,) = scan(tmp_path / "models").problems
    assert problem.file.endswith("models") and "not a folder" in problem.reason


def test_good_voices_and_whisper_models_are_found_by_name(tmp_path: Path) -> None:
    add_voice(tmp_path, "en_US-alt-medium")
    add_voice(tmp_path / "voices" / "more", "en_US-deep-medium")  # sub-folders are searched
    add_whisper(tmp_path / "tiny-copy")
    (tmp_path / "README.md").write_text("how to add models")
    (tmp_path / ".hidden.onnx").write_bytes(b"editor swap file")
    found = scan(tmp_path)
    assert [v.name for v in found.voices] == ["en_US-alt-medium", "en_US-deep-medium"]
    assert found.voices[0].config.name == "en_US-alt-medium.onnx.json"
    assert [(w.name, w.path) for w in found.whisper] == [
        ("tiny-copy", (tmp_path / "tiny-copy").resolve())
    ]
    assert found.problems == ()


def test_a_relative_folder_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_voice(tmp_path / "models", "en_US-alt-medium")
    monkeypatch.chdir(tmp_path)
    found = scan(Path("models"))
    assert found.root == tmp_path.resolve() / "models"
    assert [v.name for v in found.voices] == ["en_US-alt-medium"]


def test_broken_voices_are_skipped_by_name_with_a_reason(tmp_path: Path) -> None:
    add_voice(tmp_path, "good")
    (tmp_path / "lonely.onnx").write_bytes(JOE_MODEL.read_bytes()[:4096])
    (tmp_path / "orphan.onnx.json").write_text(JOE_CONFIG.read_text())
    os.symlink(JOE_MODEL, tmp_path / "notjson.onnx")
    (tmp_path / "notjson.onnx.json").write_text("{this is not json")
    truncated = JOE_MODEL.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(truncated[: len(truncated) // 3])
    os.symlink(JOE_CONFIG, tmp_path / "cut.onnx.json")
    os.symlink(JOE_MODEL, tmp_path / "nomap.onnx")
    config = json.loads(JOE_CONFIG.read_text())
    del config["phoneme_id_map"]
    (tmp_path / "nomap.onnx.json").write_text(json.dumps(config))

    found = scan(tmp_path)
    assert [v.name for v in found.voices] == ["good"]
    reasons = {Path(p.file).name: p.reason for p in found.problems}
    assert set(reasons) == {
        "lonely.onnx",
        "orphan.onnx.json",
        "notjson.onnx.json",
        "cut.onnx",
        "nomap.onnx.json",
    }
    assert "lonely.onnx.json is missing" in reasons["lonely.onnx"]
    assert "orphan.onnx is missing" in reasons["orphan.onnx.json"]
    assert "JSON" in reasons["notjson.onnx.json"]
    assert "truncated" in reasons["cut.onnx"]
    assert "phoneme_id_map" in reasons["nomap.onnx.json"]
    # The reason does not repeat the path the problem already names.
    assert all(not p.reason.startswith(p.file) for p in found.problems)


def test_broken_whisper_folders_are_skipped_by_name(tmp_path: Path) -> None:
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text("{}")
    (no_weights / "tokenizer.json").write_text("{}")
    bad_config = add_whisper(tmp_path / "bad-config")
    (bad_config / "config.json").unlink()
    (bad_config / "config.json").write_text("not json")
    no_vocab = tmp_path / "no-vocab"
    no_vocab.mkdir()
    os.symlink(TINY_EN / "model.bin", no_vocab / "model.bin")
    (no_vocab / "config.json").write_text("{}")

    found = scan(tmp_path)
    assert found.whisper == ()
    reasons = {Path(p.file).name: p.reason for p in found.problems}
    assert "model.bin" in reasons["no-weights"]
    assert "JSON" in reasons["config.json"]
    assert "tokenizer.json" in reasons["no-vocab"]


def test_whisper_folders_the_engine_would_refuse_are_skipped(tmp_path: Path) -> None:
    # The scan and the engine share one set of rules: faster-whisper needs tokenizer.json
    # (a vocabulary alone is not enough) and a real tokenizer in it.
    vocabulary_only = add_whisper(tmp_path / "vocabulary-only")
    (vocabulary_only / "tokenizer.json").unlink()
    not_a_tokenizer = add_whisper(tmp_path / "not-a-tokenizer")
    (not_a_tokenizer / "tokenizer.json").unlink()
    (not_a_tokenizer / "tokenizer.json").write_text("{}")
    add_whisper(tmp_path / "good")

    found = scan(tmp_path)
    assert [w.name for w in found.whisper] == ["good"]
    reasons = {p.file: p.reason for p in found.problems}
    assert reasons == {
        str(vocabulary_only): "Whisper model folder without tokenizer.json",
        str(not_a_tokenizer / "tokenizer.json"): "not a tokenizer",
    }


def test_duplicate_names_keep_the_first_and_report_the_second(tmp_path: Path) -> None:
    add_voice(tmp_path / "a", "same")
    second = add_voice(tmp_path / "b", "same")
    found = scan(tmp_path)
    assert [v.model.parent.name for v in found.voices] == ["a"]
    (problem,) = found.problems
    assert problem.file == str(second.resolve()) or problem.file == str(second)
    assert "unique" in problem.reason


def test_the_shared_test_models_dir_is_what_it_says(tmp_path: Path) -> None:
    models = make_models_dir(tmp_path, whisper=True)
    found = scan(tmp_path)
    assert [v.name for v in found.voices] == [models.good_voice]
    assert [w.name for w in found.whisper] == [models.whisper]
    assert {p.file for p in found.problems} == {
        str(models.broken_voice),
        str(models.broken_whisper),
    }
