"""Twilio's voice webhook signed with ``X-Twilio-Signature`` instead of our API key: the check
against Twilio's published examples, and a second real server configured with an auth token,
where a signed webhook reaches public agents only."""

from __future__ import annotations

import base64
import hmac
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from helpers import settings_for_test_server, start_test_server
from voicestream.transports.twilio_signature import compute_signature, signature_matches

GREETING = "Hello, thanks for calling. How can I help you?"


async def _agent(server, s: aiohttp.ClientSession, **extra: Any) -> dict[str, Any]:
    body = {"name": "signed phone desk", **extra}
    async with s.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r:
        assert r.status == 201, await r.text()
        agent: dict[str, Any] = await r.json()
        return agent


TWILIO_TOKEN = "twilio-auth-token-for-tests-0123456789"


def _twilio_signature(url: str, params: dict[str, str]) -> str:
    """Twilio's scheme, written out here on its own: HMAC-SHA1(URL + sorted name+value)."""
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(
        hmac.new(TWILIO_TOKEN.encode(), data.encode(), "sha1").digest()
    ).decode()


def test_signature_matches_twilios_published_examples() -> None:
    # The request-validator example in Twilio's documentation and helper libraries.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert compute_signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert compute_signature("12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert signature_matches("12345", url, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    # Proxies add or drop the port: Twilio's validators accept either, and so do we.
    assert signature_matches("12345", url, params.items(), "kvajT1Ptam85bY51eRf/AJRuM3w=")
    with_port = url.replace(".com", ".com:1234")
    assert signature_matches("12345", with_port, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    plain = url.replace("https", "http")
    assert signature_matches("12345", plain, params.items(), "0ZXoZLH/DfblKGATFgpif+LLRf4=")
    assert not signature_matches("54321", url, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not signature_matches(
        "12345", url, {**params, "To": "+1"}.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )


@pytest.fixture(scope="module")
async def signed_server(
    embedded_services, registry, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A second server on the same database, configured with a Twilio auth token."""
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("twilio-signed"),
        twilio_auth_token=TWILIO_TOKEN,
    )
    async with start_test_server(settings, registry) as started:
        yield started.url


async def test_a_signed_twilio_webhook_reaches_public_agents(server, signed_server: str) -> None:
    form = {"CallSid": "CA" + "0" * 32, "From": "+15551230000", "To": "+15559870000"}
    async with aiohttp.ClientSession() as s:
        public = await _agent(server, s, public=True, first_message=GREETING)
        private = await _agent(server, s)
        url = f"{signed_server}/v1/telephony/twilio/voice?agent_id={public['id']}"
        signed = {"X-Twilio-Signature": _twilio_signature(url, form)}
        async with s.post(url, data=form, headers=signed) as r:
            assert r.status == 200, await r.text()
            stream = ET.fromstring(await r.text()).find("./Connect/Stream")
        assert stream is not None
        param = stream.find("./Parameter[@name='ticket']")
        assert param is not None
        # The ticket opens the call: the greeting plays.
        async with s.ws_connect(stream.attrib["url"]) as ws:
            sid = "MZ" + "0" * 32
            start = {"streamSid": sid, "callSid": form["CallSid"], "tracks": ["inbound"]}
            start["customParameters"] = {"ticket": param.attrib["value"]}
            await ws.send_json({"event": "start", "streamSid": sid, "start": start})
            first = json.loads((await ws.receive(timeout=30)).data)
            assert first["event"] == "media" and first["streamSid"] == sid

        # Through a TLS proxy, Twilio signed the public URL; that is the one checked.
        public_url = f"https://voice.example.com/v1/telephony/twilio/voice?agent_id={public['id']}"
        proxied = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "voice.example.com",
            "X-Twilio-Signature": _twilio_signature(public_url, form),
        }
        async with s.post(url, data=form, headers=proxied) as r:
            assert r.status == 200, await r.text()

        # A private agent needs the key, signature or not.
        private_url = f"{signed_server}/v1/telephony/twilio/voice?agent_id={private['id']}"
        signed = {"X-Twilio-Signature": _twilio_signature(private_url, form)}
        async with s.post(private_url, data=form, headers=signed) as r:
            assert r.status == 403, await r.text()
            assert "public agents only" in (await r.json())["error"]["message"]
        async with s.post(private_url, data=form, headers=server.headers()) as r:
            assert r.status == 200, await r.text()


async def test_bad_twilio_signatures_are_refused(server, signed_server: str) -> None:
    form = {"CallSid": "CA" + "0" * 32, "From": "+15551230000"}
    async with aiohttp.ClientSession() as s:
        public = await _agent(server, s, public=True)
        url = f"{signed_server}/v1/telephony/twilio/voice?agent_id={public['id']}"
        good = _twilio_signature(url, form)
        for data, signature in [
            (form, "bm90IGEgc2lnbmF0dXJl"),  # not Twilio's
            ({**form, "From": "+15550000000"}, good),  # a parameter changed after signing
            (form, _twilio_signature(url + "x", form)),  # signed for another URL
        ]:
            async with s.post(url, data=data, headers={"X-Twilio-Signature": signature}) as r:
                assert r.status == 403, await r.text()
                assert (await r.json())["error"]["code"] == "forbidden"
        async with s.post(url, data=form) as r:  # neither key nor signature
            assert r.status == 401
        # The main server has no auth token: a signature cannot be checked, so it is refused.
        main = f"{server.url}/v1/telephony/twilio/voice?agent_id={public['id']}"
        async with s.post(main, data=form, headers={"X-Twilio-Signature": good}) as r:
            assert r.status == 401
            assert "VOICESTREAM_TWILIO_AUTH_TOKEN" in (await r.json())["error"]["message"]
