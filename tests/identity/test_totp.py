"""TOTP codes are accepted one step either side of now, never twice, never for an old step;
recovery codes are random, forgiving in how they are typed, and hashed per user."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlparse

import pyotp

from voicestream.identity.totp import (
    RECOVERY_CODE_COUNT,
    STEP_SECONDS,
    hash_recovery_code,
    matching_step,
    new_recovery_codes,
    new_totp_secret,
    normalise_recovery_code,
    provisioning_uri,
)

NOW = 1_800_000_015.0  # 15 s into a step, so ±1 step is unambiguous
STEP = int(NOW // STEP_SECONDS)


def _code(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * STEP_SECONDS)


def test_the_uri_names_the_account_and_issuer_and_carries_the_secret() -> None:
    secret = new_totp_secret()
    uri = urlparse(provisioning_uri(secret, "ada@example.com", "voicestream"))
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert "ada%40example.com" in uri.path or "ada@example.com" in uri.path
    query = parse_qs(uri.query)
    assert query["secret"] == [secret] and query["issuer"] == ["voicestream"]
    assert len(secret) == 32 and re.fullmatch(r"[A-Z2-7]+", secret)
    assert new_totp_secret() != secret


def test_codes_of_the_window_match_and_say_their_step() -> None:
    secret = new_totp_secret()
    for step in (STEP - 1, STEP, STEP + 1):
        assert matching_step(secret, _code(secret, step), last_used_step=None, now=NOW) == step
    for step in (STEP - 2, STEP + 2):
        assert matching_step(secret, _code(secret, step), last_used_step=None, now=NOW) is None


def test_a_used_step_and_older_ones_are_refused() -> None:
    secret = new_totp_secret()
    current = _code(secret, STEP)
    assert matching_step(secret, current, last_used_step=STEP, now=NOW) is None
    assert matching_step(secret, _code(secret, STEP - 1), last_used_step=STEP, now=NOW) is None
    assert matching_step(secret, _code(secret, STEP + 1), last_used_step=STEP, now=NOW) == STEP + 1


def test_malformed_and_wrong_codes_do_not_match() -> None:
    secret = new_totp_secret()
    good = {_code(secret, s) for s in range(STEP - 1, STEP + 2)}
    wrong = next(c for c in (f"{n:06d}" for n in range(1000)) if c not in good)
    for code in (
        wrong,
        "",
        "12345",
        "1234567",
        "abcdef",
        "\uff11\uff12\uff13\uff14\uff15\uff16",
        _code(secret, STEP) + "0",
    ):
        assert matching_step(secret, code, last_used_step=None, now=NOW) is None, code
    spaced = _code(secret, STEP)
    assert matching_step(secret, f" {spaced[:3]} {spaced[3:]} ", last_used_step=None, now=NOW)


def test_recovery_codes_are_distinct_and_typed_forgivingly() -> None:
    codes = new_recovery_codes()
    assert len(codes) == len(set(codes)) == RECOVERY_CODE_COUNT
    assert all(re.fullmatch(r"[a-z2-7]{5}-[a-z2-7]{5}", c) for c in codes)
    code = codes[0]
    assert normalise_recovery_code(code.upper().replace("-", " ")) == code.replace("-", "")
    for junk in ("", "abc", code + "x", "0000000000", "abcde-fghi1"):
        assert normalise_recovery_code(junk) is None, junk


def test_recovery_code_hashes_are_per_user() -> None:
    code = new_recovery_codes(1)[0]
    ada, bob = uuid.uuid4(), uuid.uuid4()
    digest = hash_recovery_code(ada, code)
    assert digest is not None and len(digest) == 32
    assert hash_recovery_code(ada, code.upper()) == digest
    assert hash_recovery_code(bob, code) != digest
    assert hash_recovery_code(ada, "not a code") is None
