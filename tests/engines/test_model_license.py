"""One reading of a model's licence for Piper voices and Whisper folders alike."""

from __future__ import annotations

from pathlib import Path

from model_files import add_whisper
from voicestream.engines.model_license import stated_license
from voicestream.engines.whisper_model_files import inspect_whisper_dir


def test_card_lines_and_licence_texts_are_read_in_order(tmp_path: Path) -> None:
    piper_card = tmp_path / "MODEL_CARD"
    piper_card.write_text("# Model card\n\n## Dataset\n\n* URL: somewhere\n* License: CC0\n")
    front_matter = tmp_path / "README.md"
    front_matter.write_text("---\nlicense: apache-2.0\n---\nUnder the MIT-style terms of…\n")
    mit_text = tmp_path / "LICENSE"
    mit_text.write_text("MIT License\n\nPermission is hereby granted, free of charge…\n")
    unknown_text = tmp_path / "LICENSE.txt"
    unknown_text.write_text("All rights reserved; submitted and permitted uses only.\n")
    custom = tmp_path / "CARD.md"
    custom.write_text("license: openrail\n")

    assert stated_license([piper_card]) == "CC0-1.0"
    assert stated_license([front_matter]) == "Apache-2.0"
    assert stated_license([mit_text]) == "MIT"
    assert stated_license([custom]) == "openrail"  # not a well-known one: as written
    # Neither "submitted" nor "permitted" is MIT; the next file that states one wins.
    assert stated_license([tmp_path / "missing", unknown_text, mit_text]) == "MIT"
    assert stated_license([unknown_text]) is None


def test_a_whisper_folder_reads_its_card_the_same_way(tmp_path: Path) -> None:
    folder = add_whisper(tmp_path / "small")
    (folder / "README.md").write_text("---\nlanguage: en\nlicense: cc-by-4.0\n---\n")
    assert inspect_whisper_dir(folder).license == "CC-BY-4.0"
