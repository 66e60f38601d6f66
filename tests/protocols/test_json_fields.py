"""The one field-checking kit: what each check reports, and that the protocol's words win."""

from __future__ import annotations

from typing import Any

import pytest

from voicestream.errors import ProtocolError, VoiceStreamError
from voicestream.protocols.json_fields import Fault, FieldReader


class Recorded(ProtocolError):
    def __init__(self, fault: Fault) -> None:
        super().__init__(f"{fault.path}: {fault.problem} ({fault.expected})")
        self.fault = fault


def _record(fault: Fault) -> VoiceStreamError:
    return Recorded(fault)


fields = FieldReader(_record)
strict = FieldReader(_record, text_limit=3, empty_text=False)


def _fault(read: Any) -> Fault:
    with pytest.raises(Recorded) as exc:
        read()
    return exc.value.fault


def test_a_fault_names_the_field_by_its_path() -> None:
    fault = _fault(lambda: fields.obj({"start": 1}, "start", where="call"))
    assert (fault.path, fault.problem, fault.expected, fault.value) == (
        "call.start",
        "type",
        "an object",
        1,
    )
    assert _fault(lambda: fields.obj({}, "start")).path == "start"


@pytest.mark.parametrize(
    ("msg", "problem"),
    [
        ({}, "missing"),
        ({"k": None}, "missing"),
        ({"k": 5}, "type"),
        ({"k": ""}, "empty"),
        ({"k": "long"}, "long"),
    ],
)
def test_text_follows_the_readers_rule(msg: dict[str, Any], problem: str) -> None:
    assert _fault(lambda: strict.text(msg, "k")).problem == problem


def test_a_text_may_say_its_own_limit() -> None:
    assert strict.text({"k": "longer"}, "k", limit=10) == "longer"
    assert fields.text({"k": ""}, "k") == ""
    assert fields.opt_text({"k": None}, "k") is None


def test_numbers_are_json_numbers_within_bounds() -> None:
    assert fields.integer({}, "n", 0, 9, default=4) == 4
    assert _fault(lambda: fields.integer({"n": True}, "n", 0, 9)).problem == "type"
    assert _fault(lambda: fields.integer({"n": 1.0}, "n", 0, 9)).problem == "type"
    fault = _fault(lambda: fields.integer({"n": 10}, "n", 0, 9))
    assert (fault.problem, fault.low, fault.high) == ("range", 0, 9)
    assert fields.number({"x": 1}, "x", 0, 2) == 1.0
    assert _fault(lambda: fields.number({"x": float("nan")}, "x", 0, 2)).problem == "range"
    assert fields.opt_number({}, "x", 0, 2) is None


def test_counts_accept_digits_in_strings_as_carriers_send_them() -> None:
    assert fields.opt_count({"c": "12"}, "c") == 12
    assert fields.opt_count({"c": 3}, "c") == 3
    assert _fault(lambda: fields.opt_count({"c": "x"}, "c")).problem == "type"
    assert _fault(lambda: fields.opt_count({"c": True}, "c")).problem == "type"
    assert _fault(lambda: fields.opt_count({"c": "-1"}, "c")).problem == "range"


def test_a_flag_may_default_when_absent_but_null_is_not_a_flag() -> None:
    assert fields.flag({}, "f", default=True) is True
    assert _fault(lambda: fields.flag({"f": None}, "f", default=True)).problem == "type"
    assert _fault(lambda: fields.flag({}, "f")).problem == "missing"
    assert fields.opt_flag({"f": None}, "f") is None


def test_base64_is_bounded_before_it_is_decoded() -> None:
    assert fields.base64({"a": "AAE="}, "a") == b"\x00\x01"
    assert fields.base64({"a": ""}, "a") == b""
    assert _fault(lambda: fields.base64({"a": ""}, "a", empty=False)).problem == "empty"
    assert _fault(lambda: fields.base64({"a": "!!"}, "a")).problem == "invalid"
    fault = _fault(lambda: fields.base64({"a": "A" * 9}, "a", max_chars=8))
    assert (fault.problem, fault.value, fault.high) == ("long", 9, 8)


def test_unknown_fields_and_string_maps() -> None:
    fault = _fault(lambda: fields.only({"b": 1, "a": 2, "z": 3}, {"a"}, where="s"))
    assert (fault.path, fault.problem) == ("s.b", "unknown")
    assert fields.str_map({"p": {"k": "v"}}, "p") == {"k": "v"}
    assert fields.str_map({}, "p") == {}
    assert _fault(lambda: fields.str_map({"p": {"k": 1}}, "p")).expected == (
        "names mapped to strings"
    )
    too_many = {str(i): "v" for i in range(3)}
    assert _fault(lambda: fields.str_map({"p": too_many}, "p", limit=2)).high == 2
