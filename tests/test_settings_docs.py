"""Every setting is documented where operators look: README's table and ``.env.example``.

A setting added to ``Settings`` without a line in both fails here, so the two lists stay
complete as the server grows (issue 7's settings were missing from both).
"""

from __future__ import annotations

import re
from pathlib import Path

from voicestream.config import Settings

ROOT = Path(__file__).parent.parent


def _env_names() -> set[str]:
    return {Settings.env_name(field) for field in Settings.model_fields}


def _readme_table_names() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    # A row's first cell names one or more variables, each in backticks.
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def _env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    names = _readme_table_names()
    missing, unknown = sorted(_env_names() - names), sorted(names - _env_names())
    assert not missing, f"missing from README's table: {missing}"
    assert not unknown, f"in README's table but not read by the server: {unknown}"


def test_every_setting_is_in_env_example() -> None:
    names = _env_example_names()
    missing, unknown = sorted(_env_names() - names), sorted(names - _env_names())
    assert not missing, f"missing from .env.example: {missing}"
    assert not unknown, f"in .env.example but not read by the server: {unknown}"
