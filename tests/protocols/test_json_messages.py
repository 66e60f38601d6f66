"""The one JSON loader every protocol and HTTP body goes through: what it refuses, and that it
refuses it as InvalidJSON (never a ValueError or a crash later, when the text is encoded)."""

from __future__ import annotations

import json

import pytest

from voicestream.errors import InvalidJSON, ProtocolError
from voicestream.protocols.json_messages import invalid_text_reason, load_json, load_object

HUGE_INT = "1" * 5000  # past Python's 4300-digit int-from-str guard, which raises ValueError


@pytest.mark.parametrize(
    "raw",
    [
        '{"n": ' + HUGE_INT + "}",
        '{"n": -' + HUGE_INT + "}",
        '{"n": [1, 2, ' + HUGE_INT + "]}",
        '{"n": 1' + "0" * 100 + "}",  # long, though Python could convert it
        '{"n": 1.' + "5" * 5000 + "}",
        '{"n": 1e999}',  # overflows to inf, which no JSON writer can send back
        '{"n": -1e999}',
        '{"n": NaN}',
        '{"n": Infinity}',
        '{"n": -Infinity}',
        '{"text": "\\ud800"}',  # a lone surrogate: not a Unicode scalar value
        '{"text": "ok \\udfff"}',
        '{"\\ud83d": "key"}',
        '{"list": ["fine", ["\\ud800"]]}',
        '{"text": "nul \\u0000 inside"}',  # text PostgreSQL cannot store
        '{"text\\u0000": 1}',
        b'{"text": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes
    ],
)
def test_what_no_protocol_can_use_is_invalid_json(raw: str | bytes) -> None:
    with pytest.raises(InvalidJSON) as info:
        load_object(raw)
    assert info.value.message
    with pytest.raises(InvalidJSON):
        load_json(raw)


def test_a_lone_surrogate_as_a_str_is_refused() -> None:
    with pytest.raises(InvalidJSON):
        load_object('{"text": "\ud800"}')


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"n": 123456789012345678901234567890}', {"n": 123456789012345678901234567890}),
        ('{"n": -1.5e-300, "m": 2.5E+10}', {"n": -1.5e-300, "m": 2.5e10}),
        ('{"text": "h\\u00e9llo \\ud83d\\ude00 \\u4e16"}', {"text": "héllo 😀 世"}),
        ('{"a": {"b": [true, false, null, 0, ""]}}', {"a": {"b": [True, False, None, 0, ""]}}),
        ("{}", {}),
    ],
)
def test_ordinary_json_still_loads(raw: str, expected: dict[str, object]) -> None:
    assert load_object(raw) == expected
    assert load_object(raw.encode()) == expected


def test_load_json_returns_any_value_and_load_object_wants_an_object() -> None:
    assert load_json("[1, 2]") == [1, 2]
    assert load_json('"s"') == "s"
    with pytest.raises(ProtocolError):
        load_object("[1, 2]")


def test_deep_nesting_is_invalid_json_not_a_crash() -> None:
    with pytest.raises(InvalidJSON):
        load_object("[" * 100_000)
    deep = '{"a": ' * 900 + "1" + "}" * 900
    assert load_object(deep)["a"]


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("plain", False),
        ("héllo 😀", False),
        ("", False),
        ("tab\tand\nnewline", False),
        ("nul\x00", True),
        ("\ud800", True),
        ("a\udc80b", True),  # what surrogateescape leaves for an undecodable byte
    ],
)
def test_invalid_text_reason(text: str, bad: bool) -> None:
    assert (invalid_text_reason(text) is not None) is bad


def test_numbers_round_trip_through_json_dumps() -> None:
    # What the loader lets through can always be written back out as JSON.
    data = load_object('{"a": 1e308, "b": -0.0, "c": 12345678901234567890}')
    assert json.loads(json.dumps(data, allow_nan=False)) == data
