from __future__ import annotations

import pytest

from voicestream.errors import InvalidJSON, ProtocolError, TextTooLong
from voicestream.protocols import convai


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"type":"config","input_format":"pcm_48000"}', convai.Config("pcm_48000", None, None)),
        ('{"type":"text","text":"hello"}', convai.UserText("hello")),
        ('{"type":"dtmf","digits":"12#"}', convai.Dtmf("12#")),
        ('{"type":"pong","event_id":3}', convai.Pong(3)),
        ('{"type":"end"}', convai.End()),
    ],
)
def test_parse(raw: str, expected: object) -> None:
    assert convai.parse_client_message(raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("{", InvalidJSON),
        ("[]", ProtocolError),
        ('{"type":"text","text":"   "}', ProtocolError),
        ('{"type":"text","text":' + '"' + "a" * 2001 + '"}', TextTooLong),
        ('{"type":"dtmf","digits":"12x"}', ProtocolError),
        ('{"type":"dtmf","digits":""}', ProtocolError),
        ('{"type":"config","input_format":5}', ProtocolError),
        ('{"type":"shout"}', ProtocolError),
    ],
)
def test_rejects(raw: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        convai.parse_client_message(raw)
