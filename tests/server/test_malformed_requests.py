"""Requests that once reached a 500, a crashed socket or a traceback in the log, each pinned:
huge JSON integers, lone surrogates, NUL in the URL, broken multipart bodies, impossible WAV
headers, audio that declares an absurd rate, and request lines past aiohttp's parser limit.

The log guard in conftest fails any of these tests on a server-side error or traceback."""

from __future__ import annotations

import asyncio
import json
import resource
import struct
import time
from typing import Any

import aiohttp
import pytest

from voicestream.media.signal import sine
from voicestream.media.wav import encode_wav

HUGE_INT = "9" * 5000  # past Python's 4300-digit int-from-str guard, which raises ValueError
_AGENT: dict[str, str] = {}


def _error_code(body: Any) -> str:
    """The error code in our shape, OpenAI's (same key) or ElevenLabs' (``detail.status``)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"]["code"])
    detail = body["detail"]
    return str(detail[0]["type"] if isinstance(detail, list) else detail["status"])


async def _agent_id(server: Any) -> str:
    if "id" not in _AGENT:
        async with (
            aiohttp.ClientSession(headers=server.headers()) as s,
            s.post(f"{server.url}/v1/agents", json={"name": "malformed"}) as r,
        ):
            assert r.status == 201, await r.text()
            _AGENT["id"] = (await r.json())["id"]
    return _AGENT["id"]


async def _request(server: Any, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    if "{agent}" in path:
        path = path.replace("{agent}", await _agent_id(server))
    headers = {**server.headers(), **kw.pop("headers", {})}
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"{server.url}{path}", headers=headers, **kw) as r,
    ):
        assert r.content_type == "application/json", (r.status, await r.text())
        return r.status, await r.json()


# Every route that reads a JSON body, with a body that is otherwise acceptable.
JSON_ROUTES = [
    ("POST", "/v1/tts", '{"text": "hi", "speed": %s}'),
    ("POST", "/openai/v1/audio/speech", '{"model": "tts-1", "input": "hi", "speed": %s}'),
    ("POST", "/elevenlabs/v1/text-to-speech/slt", '{"text": "hi", "seed": %s}'),
    ("POST", "/elevenlabs/v1/history/download", '{"history_item_ids": [%s]}'),
    ("POST", "/v1/agents", '{"name": "n", "temperature": %s}'),
    ("PATCH", "/v1/agents/{agent}", '{"temperature": %s}'),
    ("POST", "/v1/agents/{agent}/documents", '{"name": "d", "text": "t", "x": %s}'),
    ("POST", "/v1/convai/tickets", '{"agent_id": %s}'),
    ("POST", "/v1/convai/webrtc/offer", '{"sdp": "v=0", "type": "offer", "x": %s}'),
    ("PATCH", "/v1/convai/webrtc/offer", '{"pc_id": %s, "candidates": []}'),
]


@pytest.mark.parametrize(("method", "path", "template"), JSON_ROUTES)
@pytest.mark.parametrize(
    "value",
    [HUGE_INT, "-" + HUGE_INT, "1e999", "NaN", '"\\ud800"', '"nul\\u0000"'],
    ids=["huge-int", "huge-negative", "overflow", "nan", "surrogate", "nul"],
)
async def test_json_bodies_that_only_look_valid_are_invalid_json(
    server: Any, method: str, path: str, template: str, value: str
) -> None:
    status, body = await _request(
        server,
        method,
        path,
        data=(template % value).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert (status, _error_code(body)) == (400, "invalid_json"), body


async def _native_socket(server: Any, path: str, messages: list[str]) -> tuple[list[Any], Any]:
    events: list[Any] = []
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{server.ws_url}{path}", headers=server.headers()) as ws,
    ):
        for m in messages:
            await ws.send_str(m)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                events.append(json.loads(msg.data))
        return events, ws.close_code


@pytest.mark.parametrize("path", ["/v1/tts/stream", "/v1/stt/stream"])
@pytest.mark.parametrize(
    "message",
    [
        '{"type": "text", "text": "hi", "n": ' + HUGE_INT + "}",
        '{"type": "text", "text": "\\ud800"}',
        '{"type": "text", "text": "a\\u0000b"}',
    ],
    ids=["huge-int", "surrogate", "nul"],
)
async def test_socket_messages_that_only_look_valid_are_invalid_json(
    server: Any, path: str, message: str
) -> None:
    events, close_code = await _native_socket(server, path, [message])
    assert events[-1]["type"] == "error" and events[-1]["code"] == "invalid_json", events
    assert close_code == 1007


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/v1/convai/sessions", {"agent_id": "a\x00b"}),
        ("GET", "/v1/convai/sessions", {"end_user_id": "\x00"}),
        ("GET", "/v1/agents", {"x\x00": "1"}),
        ("GET", "/elevenlabs/v1/history", {"voice_id": "\x00"}),
        ("GET", "/v1/tts/stream", {"voice": "slt\x00"}),
        ("GET", "/v1/agents/%00", None),
        ("GET", "/elevenlabs/v1/history/%00", None),
        ("GET", "/v1/convai/sessions/a%00", None),
        ("DELETE", "/v1/agents/{agent}/documents/%00", None),
    ],
)
async def test_nul_in_the_url_is_a_400(server: Any, method: str, path: str, params: Any) -> None:
    status, body = await _request(server, method, path, params=params)
    assert (status, _error_code(body)) == (400, "bad_request"), body
    assert "NUL" in body["error"]["message"]


_WAV = encode_wav(sine(440, 0.3, 16000), 16000)
_FORM_BODY = (
    b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\n" + _WAV + b"\r\n--xyz--\r\n"
)
MULTIPART_ROUTES = [
    "/v1/stt",
    "/openai/v1/audio/transcriptions",
    "/elevenlabs/v1/speech-to-text",
    "/v1/agents/{agent}/documents",
]


@pytest.mark.parametrize("path", MULTIPART_ROUTES)
@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("multipart/form-data", _FORM_BODY),  # no boundary
        ("multipart/form-data; boundary=xyz", b"garbage, no boundary anywhere"),
        ("multipart/form-data; boundary=abc", _FORM_BODY),  # the wrong boundary
        ("multipart/form-data; boundary=xyz", _FORM_BODY[:60]),  # cut off in the headers
        ("multipart/form-data; boundary=" + "b" * 80, b"--" + b"b" * 80),  # boundary too long
        (
            "multipart/form-data; boundary=xyz",
            b"--xyz\r\n" + b"X-Filler: y\r\n" * 200 + b"\r\nbody\r\n--xyz--\r\n",
        ),  # more part headers than the parser allows
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\n\xff\xfe\r\n--xyz--\r\n',
        ),  # a text field that is not UTF-8
    ],
    ids=[
        "no-boundary",
        "garbage",
        "wrong-boundary",
        "truncated",
        "long-boundary",
        "headers",
        "utf8",
    ],
)
async def test_malformed_multipart_is_a_400(
    server: Any, path: str, content_type: str, data: bytes
) -> None:
    status, body = await _request(
        server, "POST", path, data=data, headers={"Content-Type": content_type}
    )
    assert status == 400, body
    assert _error_code(body) == "bad_request", body


def _wav(*, rate: int, bits: int, align: int, channels: int = 1, payload: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * align, align, bits)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(payload))
    return b"RIFF" + struct.pack("<I", len(body) + len(payload)) + body + payload


def _multipart(data: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("model_id", "scribe_v1")
    form.add_field("file", data, filename="a.wav", content_type="audio/wav")
    return form


STT_ROUTES = ["/v1/stt", "/openai/v1/audio/transcriptions", "/elevenlabs/v1/speech-to-text"]


@pytest.mark.parametrize("path", STT_ROUTES)
@pytest.mark.parametrize(
    "audio",
    [
        _wav(rate=16000, bits=0, align=2, payload=bytes(3200)),
        _wav(rate=16000, bits=0, align=0, payload=bytes(3200)),
        _wav(rate=16000, bits=16, align=2, channels=0, payload=bytes(3200)),
    ],
    ids=["bits-0", "bits-and-block-0", "channels-0"],
)
async def test_impossible_wav_headers_are_invalid_audio(
    server: Any, path: str, audio: bytes
) -> None:
    status, body = await _request(server, "POST", path, data=_multipart(audio))
    assert status == 400 and _error_code(body) == "invalid_audio", body


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("path", STT_ROUTES)
async def test_a_28_kb_wav_declaring_1_hz_is_refused_quickly(server: Any, path: str) -> None:
    # 14,000 samples at 1 Hz: hours of audio, 16000-fold once resampled for the recognizer.
    audio = _wav(rate=1, bits=16, align=2, payload=bytes(28_000))
    before = _peak_rss_mib()
    started = time.monotonic()
    status, body = await _request(server, "POST", path, data=_multipart(audio))
    assert status == 400 and _error_code(body) == "invalid_audio", body
    assert "sample rate" in json.dumps(body)
    assert time.monotonic() - started < 5
    assert _peak_rss_mib() - before < 200  # the server runs in this process


async def _raw_http(server: Any, request: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    ("request_bytes", "expected_status", "expected_code"),
    [
        (b"GET /healthz?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
        (b"GET /" + b"p" * 20000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"h" * 9000 + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (
            # A long URL in a header value is still a header too large, not a long request line.
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nReferer: http://x/" + b"r" * 9000 + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
            + b"".join(b"X-%d: a\r\n" % i for i in range(200))
            + b"\r\n",
            431,
            "headers_too_large",
        ),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Nul: a\x00b\r\n\r\n", 400, "bad_request"),
        (
            b"POST /v1/tts HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "bad_request",
        ),
        (b"FOO\x01 / HTTP/1.1\r\n\r\n", 400, "bad_request"),
    ],
    ids=[
        "long-query",
        "long-path",
        "long-header",
        "long-referer",
        "many-headers",
        "nul-header",
        "bad-chunk",
        "bad-method",
    ],
)
async def test_what_the_http_parser_refuses_is_a_json_4xx_without_a_traceback(
    server: Any, request_bytes: bytes, expected_status: int, expected_code: str
) -> None:
    answer = await _raw_http(server, request_bytes)
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert status == expected_status, answer[:300]
    assert b"content-type: application/json" in head.lower(), answer[:300]
    body = json.loads(payload)
    assert body["error"]["code"] == expected_code, body
    # aiohttp's own answer quoted the client's bytes back; ours does not.
    assert b"aaaa" not in payload and b"pppp" not in payload and b"hhhh" not in payload
    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/healthz") as r:
        assert r.status == 200
