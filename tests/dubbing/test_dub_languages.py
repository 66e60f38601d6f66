"""dubbing/languages.py: the language table and the voices that speak each language."""

from __future__ import annotations

import pytest

from voicestream.dubbing.languages import check_language, voices_for
from voicestream.engines.catalog import EngineRegistry
from voicestream.errors import ValidationFailed


@pytest.mark.parametrize(
    ("given", "code"),
    [("en", "en"), ("en-US", "en"), ("pt_BR", "pt"), ("DE", "de"), ("fil", "fil"), ("nb", "no")],
)
def test_codes_and_tags_normalize_to_the_table(given: str, code: str) -> None:
    assert check_language(given) == code


@pytest.mark.parametrize("bad", ["xx", "", "english", "zz-ZZ", "123"])
def test_unknown_languages_are_422_naming_the_code(bad: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_language(bad)
    assert caught.value.http_status == 422
    assert repr(bad) in caught.value.message
    assert caught.value.details == {"language": bad}


def test_voices_match_by_language_prefix(registry: EngineRegistry) -> None:
    english = voices_for(registry, "en")
    ids = [v.id for v in english]
    assert {"slt", "rms", "awb", "en_US-joe-medium"} <= set(ids)
    assert ids == sorted(ids)  # a stable order: the same voice is chosen every time
    german = voices_for(registry, "de-DE")
    assert german and all(v.language.lower().startswith("de") for v in german)
    norwegian = voices_for(registry, "no")  # espeak-ng calls it "nb"
    assert norwegian and all(v.language == "nb" for v in norwegian)
    assert voices_for(registry, "ja") == []  # a language no installed voice speaks
