"""The log filter redacts every kind of credential, wherever in a record it appears."""

from __future__ import annotations

import logging

import jwt
import pytest

from voicestream.observability.log_redaction import REDACTED, RedactSecrets, redact

# The shape generate_key() makes, fixed so every test worker collects the same ids.
KEY = "vs_R-tUmLBtldyi7dtyyLci4jPa9jgeNAfWJT-iw6qR"
# The shapes identity/access_tokens.py makes: a refresh token and a one-time e-mail token.
REFRESH = "vsr_q2N7y1Hc0Qm9Jd4LrWzX8vB3kT6pA5sE0uI7oY2gF1h"
MAIL_TOKEN = "vse_Zx8Cv7Bn6Mm5Ll4Kk3Jj2Hh1Gg0Ff9Dd8Ss7Aa6Qq5W"
TICKET = jwt.encode({"sub": "agent", "exp": 2_000_000_000}, "s" * 48, algorithm="HS256")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Client protocols ['bearer.{KEY}'] don't overlap ['convai']", KEY),
        (f"offered ['realtime', 'openai-insecure-api-key.{KEY}']", KEY),
        ("offered ['openai-insecure-api-key.sk-proj-abc123']", "sk-proj-abc123"),
        (f"GET /v1/convai/stream?agent_id=a&ticket={TICKET} 101", TICKET),
        (f"wss://h/elevenlabs/v1/convai/conversation?conversation_signature={TICKET}", TICKET),
        ("GET /x?authorization=Bearer%20sk-live-1234&voice=slt", "sk-live-1234"),
        ("GET /x?token=abcdef123456&a=b", "abcdef123456"),
        ("upload?X-Amz-Signature=0a1b2c3d4e5f&expires=1", "0a1b2c3d4e5f"),
        ("GET /media/x.wav?signature=deadbeef99", "deadbeef99"),
        ("{'Authorization': 'Bearer sk-opaque-secret', 'Host': 'h'}", "sk-opaque-secret"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("headers: xi-api-key: 0123456789abcdef", "0123456789abcdef"),
        ('{"xi_api_key": "el-secret-value", "text": " "}', "el-secret-value"),
        ('llm={"model": "m", "api_key": "sk-agent-key"}', "sk-agent-key"),
        (f"the key {KEY} was used", KEY),
        (f"a bare ticket {TICKET} in a message", TICKET),
        (f"rotating {REFRESH} for a user", REFRESH),
        (f"mail sent with {MAIL_TOKEN}.", MAIL_TOKEN),
    ],
)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert REDACTED in out


def test_a_key_keeps_its_display_prefix_and_ordinary_text_is_untouched() -> None:
    assert redact(f"key {KEY}!") == f"key {KEY[:12]}{REDACTED}!"
    plain = (
        "voicestream.transports.ws_tts: closed 1000 after 42 frames; max_tokens=200, "
        "token count 5, the ticket has expired, GET /v1/voices?voice=slt"
    )
    assert redact(plain) == plain
    assert redact(redact(f"token={KEY}")) == f"token={REDACTED}"


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("aiohttp.websocket", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_the_filter_redacts_arguments_tracebacks_and_stacks() -> None:
    try:
        raise ValueError(f"bad header Authorization: Bearer {KEY}")
    except ValueError as exc:
        record = _record("protocols %r from %s", [f"bearer.{KEY}"], "1.2.3.4", exc=exc)
    record.stack_info = f"Stack: ws_connect(protocols=['bearer.{KEY}'])"
    assert RedactSecrets().filter(record) is True
    text = logging.Formatter().format(record)
    assert KEY not in text
    assert "1.2.3.4" in text and "ValueError" in text  # the rest survives


def test_records_without_secrets_keep_their_arguments() -> None:
    record = _record("closed %d after %d frames", 1000, 42)
    RedactSecrets().filter(record)
    assert record.args == (1000, 42) and record.getMessage() == "closed 1000 after 42 frames"
