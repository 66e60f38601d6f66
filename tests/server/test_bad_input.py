"""Bad input gets a clear 4xx JSON error or a protocol error event and close code — never a
500, never a traceback (the log guard in conftest fails the test on either)."""

from __future__ import annotations

import io
import json

import aiohttp
import pytest

from voicestream.media.signal import sine


async def _post(s, url, **kw) -> tuple[int, dict]:
    async with s.post(url, **kw) as r:
        assert r.content_type == "application/json", await r.text()
        return r.status, await r.json()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 422, "invalid_request"),
        (json.dumps({"voice": "slt"}).encode(), 422, "invalid_request"),
        (json.dumps({"text": 5}).encode(), 422, "invalid_request"),
        (json.dumps({"text": "hi", "bogus": 1}).encode(), 422, "invalid_request"),
        (json.dumps({"text": "", "voice": "slt"}).encode(), 422, "empty_text"),
        (json.dumps({"text": "   \n"}).encode(), 422, "empty_text"),
        (json.dumps({"text": "x" * 2001}).encode(), 400, "text_too_long"),
        (json.dumps({"text": "hello", "voice": "nobody"}).encode(), 400, "unknown_voice"),
        (json.dumps({"text": "hello", "format": "mp3_1_1"}).encode(), 400, "unsupported_format"),
        (json.dumps({"text": "hello", "format": "pcm_12345"}).encode(), 400, "unsupported_format"),
        (b"\xff\xfe\x00garbage", 400, "invalid_json"),
    ],
)
async def test_tts_http_bad_input(server, body: bytes, status: int, code: str) -> None:
    async with aiohttp.ClientSession() as s:
        got, err = await _post(
            s,
            f"{server.url}/v1/tts",
            data=body,
            headers={**server.headers(), "Content-Type": "application/json"},
        )
    assert (got, err["error"]["code"]) == (status, code), err
    assert err["error"]["message"]


async def test_tts_http_oversized_body_is_413(server) -> None:
    big = json.dumps({"text": "a" * (5 * 1024 * 1024)}).encode()
    async with aiohttp.ClientSession() as s:
        status, err = await _post(
            s, f"{server.url}/v1/tts", data=io.BytesIO(big), headers=server.headers()
        )
    assert status == 413 and err["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("audio", "params", "code"),
    [
        (b"", None, "invalid_audio"),
        (b"this is not audio at all" * 50, None, "invalid_audio"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None, "invalid_audio"),  # truncated header
        (b"\x00\x01\x02", {"format": "pcm_16000"}, "invalid_audio"),  # odd byte count
        (b"\x00\x00" * 100, {"format": "pcm_11025"}, "unsupported_format"),  # wrong rate
        (b"\x00\x00" * 100, {"format": "mp3_44100_128"}, "unsupported_format"),  # not raw
        (b"\x00\x00" * 100, {"response_format": "docx"}, "invalid_request"),
    ],
)
async def test_stt_http_bad_input(server, audio: bytes, params, code: str) -> None:
    async with aiohttp.ClientSession() as s:
        status, err = await _post(
            s, f"{server.url}/v1/stt", data=audio, params=params, headers=server.headers()
        )
    assert 400 <= status < 500
    assert err["error"]["code"] == code, err


async def test_stt_http_oversized_upload_is_413(server) -> None:
    big = b"\x00" * (5 * 1024 * 1024)
    async with aiohttp.ClientSession() as s:
        status, err = await _post(
            s, f"{server.url}/v1/stt", data=io.BytesIO(big), headers=server.headers()
        )
        assert status == 413 and err["error"]["code"] == "payload_too_large"
        form = aiohttp.FormData()
        form.add_field("file", io.BytesIO(big), filename="big.wav", content_type="audio/wav")
        status, err = await _post(s, f"{server.url}/v1/stt", data=form, headers=server.headers())
        assert status == 413 and err["error"]["code"] == "payload_too_large"


async def test_unknown_route_and_method_are_json(server) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server.url}/v1/nothing", headers=server.headers()) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        async with s.delete(f"{server.url}/v1/tts", headers=server.headers()) as r:
            assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("params", "code"),
    [({"voice": "nobody"}, "unknown_voice"), ({"format": "aac_1"}, "unsupported_format")],
)
async def test_tts_ws_bad_query_is_refused_before_upgrade(server, params, code) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(
            f"{server.url}/v1/tts/stream", params=params, headers=server.headers()
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == code


async def _ws_exchange(server, path: str, params: dict[str, str], send) -> tuple[list, int | None]:
    events = []
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(
            f"{server.ws_url}{path}", params=params, headers=server.headers()
        ) as ws:
            await send(ws)
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    events.append(json.loads(msg.data))
            return events, ws.close_code


@pytest.mark.parametrize(
    ("payload", "code", "close"),
    [
        ("{oops", "invalid_json", 1007),
        ('"just a string"', "protocol_error", 1002),
        ('{"type": "dance"}', "protocol_error", 1002),
        ('{"type": "text", "text": 42}', "protocol_error", 1002),
        ('{"type": "end"}', "empty_text", 1008),
        (json.dumps({"type": "text", "text": "y" * 2001}), "text_too_long", 1009),
        (json.dumps({"type": "text", "text": "z" * 70_000}), "payload_too_large", 1009),
    ],
)
async def test_tts_ws_bad_messages(server, payload: str, code: str, close: int) -> None:
    async def send(ws) -> None:
        await ws.send_str(payload)

    events, close_code = await _ws_exchange(server, "/v1/tts/stream", {}, send)
    assert events[-1] == {"type": "error", "code": code, "message": events[-1]["message"]}
    assert close_code == close


async def test_tts_ws_binary_message_is_a_protocol_error(server) -> None:
    async def send(ws) -> None:
        await ws.send_bytes(b"\x00\x01")

    events, close_code = await _ws_exchange(server, "/v1/tts/stream", {}, send)
    assert events[-1]["code"] == "protocol_error" and close_code == 1002


async def test_tts_ws_total_text_limit(server) -> None:
    async def send(ws) -> None:
        for _ in range(5):
            await ws.send_json({"type": "text", "text": "word " * 100})

    events, close_code = await _ws_exchange(server, "/v1/tts/stream", {}, send)
    assert events[-1]["code"] == "text_too_long" and close_code == 1009


@pytest.mark.parametrize(
    ("messages", "code", "close"),
    [
        ([b"\x00\x01\x02"], "invalid_audio", 1007),  # odd byte count
        (["{bad json"], "invalid_json", 1007),
        (['{"type": "text", "text": "hi"}'], "protocol_error", 1002),
        ([b"\x00" * 70_000], "payload_too_large", 1009),
    ],
)
async def test_stt_ws_bad_messages(server, messages, code: str, close: int) -> None:
    async def send(ws) -> None:
        await ws.send_bytes(sine(440, 0.1, 16000))
        for m in messages:
            if isinstance(m, bytes):
                await ws.send_bytes(m)
            else:
                await ws.send_str(m)

    events, close_code = await _ws_exchange(server, "/v1/stt/stream", {}, send)
    assert events[-1]["type"] == "error" and events[-1]["code"] == code, events
    assert close_code == close


@pytest.mark.parametrize("fmt", ["pcm_11025", "mp3_44100_128", "nonsense"])
async def test_stt_ws_bad_format_is_refused_before_upgrade(server, fmt: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(
            f"{server.url}/v1/stt/stream", params={"format": fmt}, headers=server.headers()
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "unsupported_format"
