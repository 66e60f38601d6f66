"""Webhooks without a server: the signature against the Standard Webhooks reference library,
which addresses an endpoint may have, and what each answer means for a delivery."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks

from voicestream.config import ConfigError, load_settings
from voicestream.errors import ValidationFailed
from voicestream.jobs.webhook_addresses import RefusedAddress, check_address, check_url
from voicestream.jobs.webhook_sender import SenderConfig, outcome_of, retry_after_seconds
from voicestream.jobs.webhooks import event_payload, new_secret, sign

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CONFIG = SenderConfig(delays=(5.0, 300.0), timeout_s=15.0, allow_private=False)


def test_signatures_verify_with_the_reference_library() -> None:
    secret = new_secret()
    body = event_payload("job.completed", {"id": "j1", "text": "naïve ✓"}).encode()
    timestamp = int(datetime.now(UTC).timestamp())
    headers = {
        "webhook-id": "evt_j1_completed",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, "evt_j1_completed", timestamp, body),
    }
    payload = standardwebhooks.Webhook(secret).verify(body, headers)
    assert payload["type"] == "job.completed" and payload["data"]["text"] == "naïve ✓"
    for tampered in (
        {**headers, "webhook-id": "evt_j2_completed"},
        {**headers, "webhook-timestamp": str(timestamp + 1)},
    ):
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(secret).verify(body, tampered)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(body, headers)


def test_the_signature_matches_the_specs_example() -> None:
    # The example of the Standard Webhooks specification (spec/standard-webhooks.md).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


REFUSED = [
    "127.0.0.1",
    "10.0.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.251",
    "239.255.255.250",
    "240.0.0.1",
    "192.0.2.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "ff0e::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",
    "2002:a00:1::1",
    "64:ff9b::a00:1",
    "2001:db8::1",
]
ALLOWED = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    with pytest.raises(RefusedAddress):
        check_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    check_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "//example.com/x",
        "https:///x",
        "https://example.com/x#frag",
        "https://exa mple.com/x",
        "https://example.com:99999/x",
        "https://" + "a" * 2000 + ".com/",
    ],
)
async def test_malformed_urls_are_refused_even_when_private_ones_are_allowed(url: str) -> None:
    with pytest.raises(ValidationFailed):
        await check_url(url, allow_private=True)


async def test_private_hosts_pass_only_when_allowed() -> None:
    await check_url("http://127.0.0.1:9/hook", allow_private=True)
    await check_url("http://93.184.216.34/hook", allow_private=False)
    with pytest.raises(ValidationFailed, match="public"):
        await check_url("http://[::ffff:127.0.0.1]/hook", allow_private=False)


def test_2xx_succeeds_and_410_disables() -> None:
    ok = outcome_of(CONFIG, 1, duration_ms=3, status_code=204, error=None, now=NOW)
    assert ok.status == "succeeded" and ok.disable_reason is None
    gone = outcome_of(CONFIG, 1, duration_ms=3, status_code=410, error="HTTP 410", now=NOW)
    assert gone.status == "failed" and gone.disable_reason is not None


@pytest.mark.parametrize("status", [None, 301, 400, 404, 429, 500, 503])
def test_everything_else_is_retried_on_the_schedule_with_jitter(status: int | None) -> None:
    first = outcome_of(CONFIG, 1, duration_ms=3, status_code=status, error="e", now=NOW)
    assert first.status == "pending" and first.next_attempt_at is not None
    assert timedelta(seconds=4.5) <= first.next_attempt_at - NOW <= timedelta(seconds=5.5)
    second = outcome_of(CONFIG, 2, duration_ms=3, status_code=status, error="e", now=NOW)
    assert second.next_attempt_at is not None
    assert timedelta(seconds=270) <= second.next_attempt_at - NOW <= timedelta(seconds=330)
    last = outcome_of(CONFIG, 3, duration_ms=3, status_code=status, error="e", now=NOW)
    assert last.status == "failed" and "gave up after 3 attempts" in (last.error or "")


def test_a_longer_retry_after_wins_and_a_shorter_one_does_not() -> None:
    later = outcome_of(
        CONFIG, 1, duration_ms=3, status_code=429, error="e", retry_after="120", now=NOW
    )
    assert later.next_attempt_at == NOW + timedelta(seconds=120)
    sooner = outcome_of(
        CONFIG, 1, duration_ms=3, status_code=503, error="e", retry_after="1", now=NOW
    )
    assert sooner.next_attempt_at is not None
    assert sooner.next_attempt_at - NOW > timedelta(seconds=4)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("30", NOW) == 30
    assert retry_after_seconds("Thu, 02 Jan 2025 03:05:05 GMT", NOW) == 60
    assert retry_after_seconds("Thu, 02 Jan 2025 03:00:00 GMT", NOW) == 0  # in the past
    assert retry_after_seconds("99999999", NOW) == 86_400  # capped at a day
    assert retry_after_seconds("soon", NOW) is None
    assert retry_after_seconds(None, NOW) is None


def test_the_retry_schedule_setting_is_checked() -> None:
    assert load_settings({}, webhook_retry_schedule="1, 2.5,3").webhook_retry_delays == (
        1.0,
        2.5,
        3.0,
    )
    for bad in ("", "1,x", "0", "-1", ",".join(["1"] * 51), "999999999"):
        with pytest.raises(ConfigError, match="VOICESTREAM_WEBHOOK_RETRY_SCHEDULE"):
            load_settings({}, webhook_retry_schedule=bad)
