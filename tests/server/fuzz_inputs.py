"""Hypothesis strategies for malformed client input, shared by the HTTP and socket fuzz suites.

They aim at the places servers break rather than at uniform noise: numbers past Python's
int-from-str limit and float range, lone surrogates and NUL (as JSON escapes and as raw bytes),
JSON that is almost right (wrong types, unknown message types, deep nesting), multipart bodies
that are not quite forms, and audio whose header lies.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository

# Field names our protocols and routes read, so that some fuzzed objects get past the first
# checks and into the handlers.
FIELD_NAMES = [
    "type", "event", "message_type", "text", "voice", "voice_id", "model", "model_id", "input",
    "name", "format", "output_format", "response_format", "speed", "seed", "agent_id",
    "end_user_id", "user_id", "ticket", "sdp", "pc_id", "candidates", "history_item_ids",
    "temperature", "prompt", "first_message", "language", "language_code", "audio",
    "audio_base_64", "payload", "media", "start", "streamSid", "context_id", "flush",
    "close_context", "close_socket", "voice_settings", "xi_api_key", "session", "item",
    "delta", "data", "digit", "sample_rate", "config", "conversation_config_override",
]  # fmt: skip
# Query parameters routes read, same purpose.
QUERY_NAMES = [
    "voice", "format", "output_format", "response_format", "agent_id", "end_user_id", "limit",
    "before", "name", "model", "model_id", "ticket", "token", "authorization", "page_size",
    "start_after_history_item_id", "voice_id", "enable_logging", "inactivity_timeout",
    "sample_rate", "audio_format", "language_code", "include_timestamps", "commit_strategy",
    "conversation_signature", "sort_direction", "optimize_streaming_latency", "speed",
]  # fmt: skip
MESSAGE_TYPES = [
    "text", "end", "flush", "config", "dtmf", "pong", "ping", "connected", "start", "media",
    "mark", "stop", "clear", "session.update", "input_audio_buffer.append",
    "input_audio_buffer.commit", "input_audio_buffer.clear", "response.create",
    "response.cancel", "conversation.item.create", "conversation.item.truncate",
    "conversation_initiation_client_data", "user_message", "user_activity",
    "contextual_update", "client_tool_result", "feedback", "input_audio_chunk", "websocket:dtmf",
]  # fmt: skip

HUGE_INT = "7" * 4400  # past Python's 4300-digit int-from-str guard

# Text that has broken servers: NUL, a lone surrogate, invisible and combining marks, RTL
# override, a huge number as text, SQL and path syntax, very long text.
NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "x\udfffy",
        "\ufeff",
        "\u202e",
        "e\u0301" * 50,
        "😀" * 20,
        HUGE_INT,
        "-1",
        "0",
        "1e999",
        "NaN",
        "null",
        "'; DROP TABLE agents; --",
        "../../etc/passwd",
        "%00",
        "x" * 5000,
        "00000000-0000-0000-0000-000000000000",
        "slt",
    ]
)
TEXT = st.one_of(NASTY_TEXT, st.text(max_size=40))

# Raw JSON literals, spliced in as text: what json.dumps would never write.
RAW_JSON_LITERALS = st.sampled_from(
    [
        HUGE_INT,
        "-" + HUGE_INT,
        "1" + "0" * 400 + ".5",
        "1e999",
        "-1e999",
        "NaN",
        "Infinity",
        '"\\ud800"',
        '"a\\udc00"',
        '"\\u0000"',
        "[" * 2000 + "]" * 2000,
        '{"a":' * 300 + "1" + "}" * 300,
    ]
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), TEXT), children, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def json_objects(draw: st.DrawFn) -> dict[str, Any]:
    """An object with fields our protocols know, of any type, and sometimes a known type."""
    obj: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=6)
    )
    if draw(st.booleans()):
        obj[draw(st.sampled_from(["type", "event", "message_type"]))] = draw(
            st.one_of(st.sampled_from(MESSAGE_TYPES), TEXT)
        )
    return obj


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)  # lone surrogates survive as \\udxxx escapes


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """JSON message text: almost-right objects, bad literals spliced in, or not JSON at all."""
    kind = draw(st.sampled_from(["object", "spliced", "value", "broken"]))
    if kind == "object":
        return _dumps(draw(json_objects()))
    if kind == "spliced":
        obj = draw(json_objects())
        key = draw(st.sampled_from(FIELD_NAMES))
        literal = draw(RAW_JSON_LITERALS)
        base = _dumps(obj)
        return base[:-1] + ("," if obj else "") + f'"{key}": {literal}' + "}"
    if kind == "value":
        return _dumps(draw(JSON_VALUES))
    return draw(
        st.one_of(
            st.sampled_from(["{", "}", "[", '{"type":', '{"text": "a\\x"}', "\x00", "{}" * 50]),
            st.text(max_size=60),
        )
    )


def wav_with_fields(
    *, tag: int, channels: int, rate: int, align: int, bits: int, payload: bytes
) -> bytes:
    """A WAV file with exactly these fmt fields, consistent or not."""
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(payload))
    return b"RIFF" + struct.pack("<I", len(body) + len(payload)) + body + payload


@st.composite
def bad_audio(draw: st.DrawFn) -> bytes:
    """Audio files that lie: WAV fields out of range, truncated headers, container magic with
    garbage behind it, or plain random bytes."""
    kind = draw(st.sampled_from(["wav", "magic", "random"]))
    if kind == "wav":
        return wav_with_fields(
            tag=draw(st.sampled_from([0, 1, 3, 6, 7, 0x11, 0x55, 0xFFFE, 0x1234])),
            channels=draw(st.sampled_from([0, 1, 2, 9, 255, 65535])),
            rate=draw(st.sampled_from([0, 1, 7, 999, 8000, 16000, 400_000, 2**32 - 1])),
            align=draw(st.sampled_from([0, 1, 2, 3, 4, 65535])),
            bits=draw(st.sampled_from([0, 1, 4, 8, 12, 16, 24, 32, 64, 65535])),
            payload=bytes(draw(st.sampled_from([0, 1, 2, 28_000]))),
        )
    if kind == "magic":
        magic = draw(st.sampled_from([b"RIFF", b"OggS", b"fLaC", b"ID3", b"\xff\xfb", b".snd"]))
        return magic + draw(st.binary(max_size=200))
    return draw(st.binary(max_size=300))


WYOMING_TYPES = [
    "describe", "ping", "synthesize", "synthesize-start", "synthesize-chunk", "synthesize-stop",
    "transcribe", "audio-start", "audio-chunk", "audio-stop", "select-program", "detect", "info",
]  # fmt: skip
WYOMING_FIELDS = [
    "rate", "width", "channels", "text", "voice", "name", "language", "speaker", "timestamp",
    "text_format",
]  # fmt: skip
# Values that get audio-start and its chunks past validation now and then, and some that should
# not: a Wyoming stream goes further into the server with plausible audio formats.
_WYOMING_VALUES = st.one_of(
    JSON_VALUES, st.sampled_from([16000, 8000, 22050, 2, 1, 6, 0, -1, 2**40, "slt", "en"])
)
_BAD_LENGTHS = st.sampled_from(["-1", "1.5", '"7"', "true", "99999999999", "[]"])


@st.composite
def wyoming_events(draw: st.DrawFn) -> bytes:
    """One Wyoming event on the wire (header line, data, payload) that is almost right, a
    header with a bad literal or length spliced in, a line that is not a header, or noise."""
    kind = draw(st.sampled_from(["event", "event", "spliced", "line", "noise"]))
    if kind == "noise":
        return draw(st.binary(max_size=200))
    if kind == "line":
        return draw(json_texts()).encode("utf-8", "surrogatepass") + b"\n"
    data = draw(st.dictionaries(st.sampled_from(WYOMING_FIELDS), _WYOMING_VALUES, max_size=4))
    header: dict[str, Any] = {"type": draw(st.one_of(st.sampled_from(WYOMING_TYPES), TEXT))}
    extra = b""
    if draw(st.booleans()):
        header["data"] = data
    elif data:
        extra = _dumps(data).encode()
        header["data_length"] = len(extra)
    payload = draw(st.one_of(st.just(b""), st.binary(max_size=300), bad_audio()))
    if payload:
        header["payload_length"] = len(payload)
    line = _dumps(header)
    if kind == "spliced":  # a later duplicate key wins: the header lies about itself
        key = draw(st.sampled_from(["data_length", "payload_length", "type", "data"]))
        literal = draw(st.one_of(RAW_JSON_LITERALS, _BAD_LENGTHS))
        line = line[:-1] + f', "{key}": {literal}' + "}"
    return line.encode("utf-8", "surrogatepass") + b"\n" + extra + payload


def encode_path_segment(text: str) -> str:
    """Percent-encoded UTF-8, with lone surrogates written as the bytes they would be."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """(Content-Type, body): a form that is almost right, or one that is not a form."""
    boundary = draw(st.sampled_from(["xyz", "a" * 70, "b" * 80, "", "x y"]))
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.one_of(st.sampled_from(["file", "model", "model_id", "name", "x"]), TEXT))
        header = draw(
            st.sampled_from(
                [
                    f'Content-Disposition: form-data; name="{name}"',
                    f'Content-Disposition: form-data; name="{name}"; filename="a.wav"\r\n'
                    "Content-Type: audio/wav",
                    "Content-Disposition: form-data",
                    "Content-Disposition: ;;;",
                    "X: y",
                ]
            )
        )
        content = draw(st.one_of(bad_audio(), TEXT.map(lambda t: t.encode("utf-8", "replace"))))
        parts.append(
            b"--" + boundary.encode() + b"\r\n" + header.encode("utf-8", "replace") + b"\r\n\r\n"
            + content + b"\r\n"
        )  # fmt: skip
    body = b"".join(parts)
    if draw(st.booleans()):
        body += b"--" + boundary.encode() + b"--\r\n"
    else:
        body = body[: draw(st.integers(0, max(0, len(body))))]
    content_type = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}",
                "multipart/form-data",
                "multipart/mixed; boundary=xyz",
                f'multipart/form-data; boundary="{boundary}"; charset=bogus',
            ]
        )
    )
    return content_type, body


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=latin-1",
    "text/plain",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "audio/wav",
    "text/markdown",
    "garbage",
]


@st.composite
def request_bodies(draw: st.DrawFn) -> tuple[str | None, bytes]:
    """(Content-Type or None, body) for any route."""
    kind = draw(st.sampled_from(["none", "json", "multipart", "audio", "form", "binary"]))
    if kind == "none":
        return None, b""
    if kind == "json":
        text = draw(json_texts())
        return draw(st.sampled_from(CONTENT_TYPES[:2])), text.encode("utf-8", "surrogatepass")
    if kind == "multipart":
        return draw(multipart_bodies())
    if kind == "audio":
        return draw(st.sampled_from(["audio/wav", "application/octet-stream"])), draw(bad_audio())
    if kind == "form":
        fields = draw(st.dictionaries(st.sampled_from(QUERY_NAMES), TEXT, max_size=4))
        body = "&".join(f"{quote(k)}={encode_path_segment(v)}" for k, v in fields.items())
        return "application/x-www-form-urlencoded", body.encode()
    return draw(st.sampled_from(CONTENT_TYPES)), draw(st.binary(max_size=200))


def query_strings() -> st.SearchStrategy[str]:
    """A percent-encoded query string (without the '?')."""
    pairs = st.lists(st.tuples(st.one_of(st.sampled_from(QUERY_NAMES), TEXT), TEXT), max_size=4)
    return pairs.map(
        lambda items: "&".join(
            f"{encode_path_segment(k)}={encode_path_segment(v)}" for k, v in items
        )
    )


@dataclass(frozen=True)
class FuzzIdentity:
    """A key of a fuzz suite's own workspace (what the fuzzer creates stays out of other tests'
    way) and an agent in it, so that routes and sockets taking an agent id get past the lookup."""

    key: str
    agent_id: str
    scim_token: str  # the workspace's SCIM bearer token: /scim/v2 takes no API key


_IDENTITIES: dict[str, FuzzIdentity] = {}  # by workspace: made once per session server


async def fuzz_identity(server: Any, workspace: str) -> FuzzIdentity:
    """The fuzz identity of ``workspace`` on the session ``server``, made on first use."""
    if workspace not in _IDENTITIES:
        _, key = await ApiKeyRepository(server.app[POOL]).create(workspace=workspace, role="owner")
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{server.url}/v1/agents",
                json={"name": f"fuzzed by {workspace}"},
                headers={"Authorization": f"Bearer {key}"},
            ) as r,
        ):
            assert r.status == 201, await r.text()
            agent_id = (await r.json())["id"]
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{server.url}/v1/admin/scim/tokens",
                json={"name": "fuzz"},
                headers={"Authorization": f"Bearer {key}"},
            ) as r,
        ):
            assert r.status == 201, await r.text()
            scim_token = (await r.json())["token"]
        _IDENTITIES[workspace] = FuzzIdentity(key, agent_id, scim_token)
    return _IDENTITIES[workspace]


def fuzz_settings(examples: int) -> settings:
    """The fuzz suites' hypothesis settings: a fixed, bounded set of examples (the same ones on
    every run, so a failure reproduces), no per-example deadline (the suites enforce their own),
    and the health checks that a live server and large inputs trip on purpose turned off."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
