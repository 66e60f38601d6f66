"""The native protocol codec, without sockets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from voicestream.errors import InvalidJSON, ProtocolError, TextTooLong
from voicestream.protocols import native


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"type":"text","text":"Hello, "}', native.Text("Hello, ")),
        ('{"type":"text","text":""}', native.Text("")),
        ('{"type":"flush"}', native.Flush()),
        ('{"type":"end","extra":1}', native.End()),
    ],
)
def test_parse_tts_messages(raw: str, expected: object) -> None:
    assert native.parse_tts_message(raw, max_text_chars=100) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("{", InvalidJSON),
        ("", InvalidJSON),
        ("[" * 100_000, InvalidJSON),  # deep nesting must not crash the parser
        ("[]", ProtocolError),
        ("null", ProtocolError),
        ('{"text":"no type"}', ProtocolError),
        ('{"type":"text"}', ProtocolError),
        ('{"type":"text","text":["a"]}', ProtocolError),
        ('{"type":"speak"}', ProtocolError),
        ('{"type":"text","text":"' + "a" * 101 + '"}', TextTooLong),
    ],
)
def test_parse_tts_rejects(raw: str, error: type[Exception]) -> None:
    with pytest.raises(error) as exc:
        native.parse_tts_message(raw, max_text_chars=100)
    assert str(exc.value)


def test_parse_stt() -> None:
    assert native.parse_stt_message('{"type":"end"}') == native.End()
    with pytest.raises(ProtocolError):
        native.parse_stt_message('{"type":"flush"}')


def test_events_serialize_to_the_documented_shapes() -> None:
    ev = json.loads(
        native.final_event("hi there", [("hi", 0.1234, 0.3), ("there", 0.3, 0.7)], 0.1, 0.71)
    )
    assert ev == {
        "type": "final",
        "text": "hi there",
        "words": [
            {"text": "hi", "start": 0.123, "end": 0.3},
            {"text": "there", "start": 0.3, "end": 0.7},
        ],
        "start": 0.1,
        "end": 0.71,
    }
    assert json.loads(native.partial_event("hi")) == {"type": "partial", "text": "hi"}
    assert json.loads(native.done_event(characters=3)) == {"type": "done", "characters": 3}
    err = json.loads(native.error_event(TextTooLong("too long")))
    assert err == {"type": "error", "code": "text_too_long", "message": "too long"}


def test_pure_layers_import_no_io_frameworks() -> None:
    """protocols/ and media/ stay pure: importing them pulls in no I/O framework."""
    code = (
        "import sys, pkgutil, importlib, voicestream.protocols as p, voicestream.media as m\n"
        "for pkg in (p, m):\n"
        "    for info in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + info.name)\n"
        "io = {'asyncio', 'aiohttp', 'aiortc', 'asyncpg', 'redis', 'websockets'}\n"
        "bad = io & set(sys.modules)\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
