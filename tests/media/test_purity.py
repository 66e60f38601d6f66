"""voicestream.media stays free of I/O frameworks, so it can run anywhere (threads, tools)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import voicestream.media

FORBIDDEN = ("asyncio", "aiohttp", "aiortc", "asyncpg", "redis")
MEDIA_DIR = Path(voicestream.media.__file__).parent
MODULES = sorted(f"voicestream.media.{m.name}" for m in pkgutil.iter_modules([str(MEDIA_DIR)]))


def test_every_module_is_covered() -> None:
    assert {"voicestream.media.encode", "voicestream.media.decode"} <= set(MODULES)


def test_importing_media_pulls_in_no_io_framework() -> None:
    script = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_no_module_names_an_io_framework() -> None:
    for path in MEDIA_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
