"""ElevenLabs' streaming sockets on a real server.

``stream-input`` and ``multi-stream-input`` through raw ``websockets`` (as pipecat and browsers
speak them), their audio transcribed back and compared with the text; Scribe realtime through
the official SDK, fed with TTS-made speech; keys in the header, the query and the first message;
every kind of bad input.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import httpx
import pytest
import websockets
from elevenlabs import AsyncElevenLabs
from elevenlabs.realtime.connection import RealtimeConnection, RealtimeEvents
from elevenlabs.realtime.scribe import AudioFormat, CommitStrategy

from helpers import corpus_wer, normalize, sentences
from server.waiting import wait_for_change
from voicestream.rest.resources import METRICS
from voicestream.transports.elevenlabs_rest import PREFIX

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture
Message = dict[str, Any] | str | bytes

TTS = f"{PREFIX}/v1/text-to-speech"
STREAM = f"{TTS}/slt/stream-input"
MULTI = f"{TTS}/slt/multi-stream-input"
SCRIBE = f"{PREFIX}/v1/speech-to-text/realtime"
PCM = "output_format=pcm_16000"

INIT = {
    "text": " ",
    "try_trigger_generation": True,
    "voice_settings": None,
    "generation_config": {"chunk_length_schedule": [50]},
}


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[AsyncElevenLabs]:
    # Our own httpx client, so its connections are closed when the test ends.
    async with httpx.AsyncClient(timeout=60) as http:
        yield AsyncElevenLabs(
            base_url=f"{server.url}{PREFIX}", api_key=server.api_key, httpx_client=http
        )


async def _exchange(
    server: RunningServer,
    path: str,
    messages: list[Message],
    *,
    query: str = PCM,
    key_header: bool = True,
    pause_after: dict[int, float] | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Send ``messages`` (pausing where asked), then read until the server closes."""
    headers = {"xi-api-key": server.api_key} if key_header else {}
    received: list[dict[str, Any]] = []
    url = f"{server.ws_url}{path}?{query}"
    async with websockets.connect(url, additional_headers=headers, max_size=2**24) as ws:
        for i, m in enumerate(messages):
            await ws.send(m if isinstance(m, str | bytes) else json.dumps(m))
            if pause_after and i in pause_after:
                await asyncio.sleep(pause_after[i])
        try:
            async with asyncio.timeout(90):
                async for raw in ws:
                    received.append(json.loads(raw))
        except websockets.ConnectionClosedError:
            pass
        assert ws.close_code is not None
        return received, ws.close_code


def _audio(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(m["audio"]) for m in messages if m.get("audio"))


def _chars(messages: list[dict[str, Any]]) -> str:
    return "".join("".join(m["alignment"]["chars"]) for m in messages if m.get("alignment"))


async def _transcribe(client: AsyncElevenLabs, pcm16k: bytes) -> str:
    result = await client.speech_to_text.convert(
        model_id="scribe_v1", file=("a.pcm", pcm16k), file_format="pcm_s16le_16"
    )
    return result.text


async def _characters_used(client: AsyncElevenLabs) -> int:
    return (await client.user.subscription.get()).character_count or 0


# --- stream-input ---------------------------------------------------------------------------


async def test_stream_input_sdk_flow(server: RunningServer, client: AsyncElevenLabs) -> None:
    pieces = ["Hello there. ", "The weather is ", "nice today. ", "Please call me back. "]
    msgs: list[Message] = [INIT]
    msgs += [{"text": p, "try_trigger_generation": True} for p in pieces]
    msgs.append({"text": ""})
    received, code = await _exchange(
        server, STREAM, msgs, query="model_id=Ellipsis&output_format=pcm_16000"
    )
    assert code == 1000
    assert received[-1] == {"isFinal": True}
    audio_msgs = received[:-1]
    assert len(audio_msgs) >= 3, "one message per clause"
    audio = _audio(audio_msgs)
    assert 2.0 < len(audio) / 2 / 16000 < 10
    assert _chars(audio_msgs) == "".join(pieces)
    for m in audio_msgs:
        a = m["alignment"]
        assert m["isFinal"] is None and set(a) == {"chars", "charStartTimesMs", "charDurationsMs"}
        assert "contextId" not in m
        assert a["charStartTimesMs"] == sorted(a["charStartTimesMs"])
        ms = len(base64.b64decode(m["audio"])) / 2 / 16
        assert a["charStartTimesMs"][-1] + a["charDurationsMs"][-1] <= ms + 1, "chunk-relative"
    text = normalize(await _transcribe(client, audio))
    assert {"weather", "nice", "call"} & set(text.split()), text


async def test_stream_input_mp3_and_flush(server: RunningServer) -> None:
    msgs: list[Message] = [
        {"text": " ", "xi-api-key": server.api_key},
        {"text": "no punctuation here ", "flush": True},
        {"text": ""},
    ]
    received, code = await _exchange(server, STREAM, msgs, query="output_format=mp3_44100_128")
    assert code == 1000 and received[-1] == {"isFinal": True}
    with av.open(io.BytesIO(_audio(received[:-1]))) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert 0.5 < samples / 44100 < 5


@pytest.mark.parametrize(
    ("messages", "code", "error"),
    [
        (["{not json"], 1007, "invalid_json"),
        ([{"text": ""}], 1002, "protocol_error"),
        ([INIT, {"text": 5}], 1002, "protocol_error"),
        ([INIT, b"\x00\x01"], 1002, "protocol_error"),
        (
            [{"text": " ", "generation_config": {"chunk_length_schedule": [5]}}],
            1008,
            "invalid_request",
        ),
        ([INIT, {"text": "hi ", "flush": "yes"}], 1008, "invalid_request"),
        ([INIT, {"text": "x" * 2001}], 1009, "text_too_long"),
        ([INIT, "{" + " " * 70_000 + "}"], 1009, "payload_too_large"),
    ],
)
async def test_stream_input_bad_messages(
    server: RunningServer, messages: list[Message], code: int, error: str
) -> None:
    received, close_code = await _exchange(server, STREAM, messages)
    assert close_code == code
    assert received[-1]["error"] == error and received[-1]["message"]


async def test_stream_input_inactivity_timeout(server: RunningServer) -> None:
    received, code = await _exchange(server, STREAM, [INIT], query=f"{PCM}&inactivity_timeout=1")
    assert code == 1008 and received[-1]["error"] == "input_timeout_exceeded"


@pytest.mark.parametrize("path", [STREAM, MULTI])
@pytest.mark.parametrize(
    ("voice", "query", "status"),
    [
        ("nobody", "", 404),
        ("slt", "output_format=wav_1", 400),
        ("slt", "inactivity_timeout=999", 422),
        ("slt", "model_id=nope", 422),
        ("slt", "sync_alignment=maybe", 422),
    ],
)
async def test_tts_sockets_rejected_before_upgrade(
    server: RunningServer, path: str, voice: str, query: str, status: int
) -> None:
    with pytest.raises(websockets.InvalidStatus) as info:
        await _exchange(server, path.replace("/slt/", f"/{voice}/"), [INIT], query=query)
    assert info.value.response.status_code == status
    body = json.loads(info.value.response.body or b"{}")
    assert body["detail"]["message"] if status != 422 else body["detail"][0]["msg"]


# --- keys: header, query, first message -----------------------------------------------------


async def test_stream_input_key_in_the_query(
    server: RunningServer, client: AsyncElevenLabs
) -> None:
    text = sentences()[1]
    msgs: list[Message] = [INIT, {"text": text + " "}, {"text": ""}]
    received, code = await _exchange(
        server,
        STREAM,
        msgs,
        query=f"{PCM}&authorization=Bearer%20{server.api_key}",
        key_header=False,
    )
    assert code == 1000 and received[-1] == {"isFinal": True}
    heard = set(normalize(await _transcribe(client, _audio(received))).split())
    assert len({"call", "back", "tomorrow", "morning"} & heard) >= 2, heard


@pytest.mark.parametrize("field", ["xi_api_key", "xi-api-key", "authorization"])
async def test_stream_input_key_in_the_first_message(
    server: RunningServer, client: AsyncElevenLabs, field: str
) -> None:
    value = f"Bearer {server.api_key}" if field == "authorization" else server.api_key
    text = sentences()[0] + " "
    before = await _characters_used(client)
    received, code = await _exchange(
        server,
        STREAM,
        [{"text": " ", field: value}, {"text": text}, {"text": ""}],
        key_header=False,
    )
    assert code == 1000 and received[-1] == {"isFinal": True}
    assert _chars(received) == text
    heard = set(normalize(await _transcribe(client, _audio(received))).split())
    assert len({"weather", "nice", "today"} & heard) >= 2, heard
    # Billed to the key's workspace like any other synthesis.
    assert await _characters_used(client) == before + len(text)


@pytest.mark.parametrize(
    ("query", "first", "error"),
    [
        (PCM, INIT, "missing_api_key"),
        (f"{PCM}&authorization=Bearer%20sk_not_a_key", INIT, "invalid_api_key"),
        (f"{PCM}&authorization=", INIT, "missing_api_key"),
        (PCM, {"text": " ", "xi_api_key": "sk_not_a_key"}, "invalid_api_key"),
        (PCM, {"text": " ", "authorization": "Bearer "}, "missing_api_key"),
    ],
)
async def test_stream_input_refuses_missing_and_bad_keys(
    server: RunningServer, query: str, first: dict[str, Any], error: str
) -> None:
    msgs: list[Message] = [first, {"text": "Secret text. "}, {"text": ""}]
    received, code = await _exchange(server, STREAM, msgs, query=query, key_header=False)
    assert code == 1008
    assert [m.get("error") for m in received] == [error], received  # no audio, only the error
    assert received[0]["message"]


async def test_a_bad_key_header_is_refused_before_the_upgrade(server: RunningServer) -> None:
    url = f"{server.ws_url}{STREAM}?{PCM}"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(url, additional_headers={"xi-api-key": "sk_not_a_key"}):
            pass
    assert info.value.response.status_code == 401


async def test_multi_stream_key_in_the_first_message(
    server: RunningServer, client: AsyncElevenLabs
) -> None:
    text = sentences()[3] + " "
    msgs: list[Message] = [
        {"text": " ", "context_id": "c1", "xi_api_key": server.api_key},
        {"text": text, "context_id": "c1", "flush": True},
        {"close_socket": True},
    ]
    received, code = await _exchange(server, MULTI, msgs, key_header=False)
    assert code == 1000 and received[-1] == {"isFinal": True, "contextId": "c1"}
    assert _chars(received) == text
    heard = set(normalize(await _transcribe(client, _audio(received))).split())
    assert len({"meeting", "moved", "next", "week"} & heard) >= 2, heard

    refused, code = await _exchange(server, MULTI, msgs[1:], key_header=False)
    assert code == 1008 and [m.get("error") for m in refused] == ["missing_api_key"]


async def test_voice_settings_speed_paces_both_sockets(
    server: RunningServer, client: AsyncElevenLabs
) -> None:
    """voice_settings.speed in the first message (stream-input) or a context's first message
    (multi-stream-input) makes the Piper voice speak faster, its words still heard."""
    text = "The children are playing in the park. "
    piper = f"{TTS}/en_US-joe-medium"
    seconds: dict[tuple[str, float], float] = {}
    for speed in (1.0, 1.5):
        settings = {"stability": 0.5, "speed": speed}
        single: list[Message] = [{"text": " ", "voice_settings": settings}, {"text": text}]
        multi: list[Message] = [
            {"text": " ", "context_id": "c", "voice_settings": settings},
            {"text": text, "context_id": "c", "flush": True},
            {"context_id": "c", "close_context": True},
            {"close_socket": True},
        ]
        for path, msgs in (
            (f"{piper}/stream-input", [*single, {"text": ""}]),
            (f"{piper}/multi-stream-input", multi),
        ):
            received, code = await _exchange(server, path, msgs)
            assert code == 1000 and not [m for m in received if "error" in m], received
            audio = _audio(received)
            seconds[path.rsplit("/", 1)[1], speed] = len(audio) / 2 / 16000
            if speed != 1.0:
                heard = normalize(await _transcribe(client, audio))
                assert corpus_wer([normalize(text)], [heard]) <= 0.2, heard
    for socket in ("stream-input", "multi-stream-input"):
        ratio = seconds[socket, 1.5] / seconds[socket, 1.0]
        assert 1 / 1.5 * 0.85 < ratio < 0.85, (socket, seconds)


# --- multi-stream-input ---------------------------------------------------------------------


async def test_multi_stream_two_interleaved_contexts(
    server: RunningServer, client: AsyncElevenLabs
) -> None:
    texts = {"alpha": sentences()[0:3], "beta": sentences()[3:6]}
    settings = {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.0}
    msgs: list[Message] = [{"text": ""}]  # pipecat's context-less keep-alive
    msgs += [{"text": " ", "context_id": c, "voice_settings": settings} for c in texts]
    for i in range(3):
        msgs += [{"text": texts[c][i] + " ", "context_id": c} for c in texts]
    for c in texts:
        msgs += [{"context_id": c, "flush": True}, {"context_id": c, "close_context": True}]
    msgs.append({"close_socket": True})
    received, code = await _exchange(server, MULTI, msgs, query=f"{PCM}&model_id=eleven_flash_v2_5")
    assert code == 1000
    assert not [m for m in received if "error" in m], received
    assert all(m.get("contextId") in texts for m in received)
    hyps = {}
    for c, said in texts.items():
        mine = [m for m in received if m["contextId"] == c]
        assert mine[-1] == {"isFinal": True, "contextId": c}
        assert [m for m in mine if m.get("isFinal")] == [mine[-1]], "one isFinal, at the end"
        assert _chars(mine) == "".join(s + " " for s in said)
        hyps[c] = await _transcribe(client, _audio(mine))
    refs = [" ".join(said) for said in texts.values()]
    heard = [hyps[c] for c in texts]
    assert corpus_wer(refs, heard) <= 0.35, heard
    # Each context says its own sentences, not the other's.
    assert corpus_wer(refs, heard) < corpus_wer(refs[::-1], heard)
    # The contexts spoke side by side, not one after the other.
    order = [m["contextId"] for m in received if m.get("audio")]
    assert order.index("beta") < len(order) - 1 - order[::-1].index("alpha")


async def test_multi_stream_close_context_and_reuse(
    server: RunningServer, client: AsyncElevenLabs
) -> None:
    first = sentences()[1].rstrip(".")  # no punctuation, no flush: close_context speaks it
    second = sentences()[0] + " "
    msgs: list[Message] = [
        {"text": first, "context_id": "a"},
        {"context_id": "a", "close_context": True},
        {"context_id": "a", "close_context": True},  # already closed: nothing changes
        {"context_id": "ghost", "close_context": True},  # never opened: nothing happens
        {"text": second, "context_id": "a", "flush": True},  # the id again: a new context
        {"context_id": "a", "close_context": True},
        {"close_socket": True},
    ]
    received, code = await _exchange(server, MULTI, msgs)
    assert code == 1000
    assert all(m.get("contextId") == "a" for m in received), received
    finals = [i for i, m in enumerate(received) if m.get("isFinal")]
    assert len(finals) == 2 and finals[1] == len(received) - 1
    one, two = received[: finals[0]], received[finals[0] + 1 : finals[1]]
    assert one and two and all(m.get("audio") for m in one + two)
    # Closing a context ends its alignment on a space even though its text had none.
    assert (_chars(one), _chars(two)) == (first + " ", second)
    heard = [await _transcribe(client, _audio(part)) for part in (one, two)]
    assert corpus_wer([first, second], heard) <= 0.35, heard


async def test_multi_stream_keep_alive_and_inactivity(server: RunningServer) -> None:
    # Keep-alives hold the context open across idle time longer than the timeout...
    msgs: list[Message] = [{"text": "one ", "context_id": "a"}]
    msgs += [{"text": "", "context_id": "a"}] * 12
    msgs += [{"text": "two. ", "context_id": "a", "flush": True}, {"close_socket": True}]
    received, code = await _exchange(
        server,
        MULTI,
        msgs,
        query=f"{PCM}&inactivity_timeout=2",
        pause_after={i: 0.3 for i in range(13)},
    )
    assert code == 1000
    assert [m for m in received if m.get("isFinal")] == [{"isFinal": True, "contextId": "a"}]
    assert _chars(received) == "one two. "

    # ...without them the context ends by itself (its audio, then isFinal), and then the
    # socket, with nothing open, times out.
    received, code = await _exchange(
        server,
        MULTI,
        [{"text": "Hello there. ", "context_id": "a"}],
        query=f"{PCM}&inactivity_timeout=1",
    )
    assert code == 1008
    assert received[-2:] == [
        {"isFinal": True, "contextId": "a"},
        {"error": "input_timeout_exceeded", "message": received[-1]["message"]},
    ]
    assert _chars(received) == "Hello there. "


async def test_multi_stream_limits_open_contexts(server: RunningServer) -> None:
    msgs: list[Message] = [{"text": " ", "context_id": f"c{i}"} for i in range(6)]
    received, code = await _exchange(server, MULTI, msgs)
    assert code == 1008
    assert received == [{"error": "max_active_conversations", "message": received[0]["message"]}]


@pytest.mark.parametrize(
    ("messages", "code", "error"),
    [
        (["{not json"], 1007, "invalid_json"),
        (['{"text": "Hello", "context_id": "a'], 1007, "invalid_json"),  # truncated
        (["[1, 2]"], 1002, "protocol_error"),
        ([{"text": 5, "context_id": "a"}], 1002, "protocol_error"),
        ([{"context_id": "a"}], 1002, "protocol_error"),
        ([{"close_context": True}], 1002, "protocol_error"),
        ([b"\x00\x01"], 1002, "protocol_error"),
        ([{"text": "hi ", "context_id": 7}], 1008, "invalid_request"),
        ([{"text": "hi ", "context_id": "a", "flush": "yes"}], 1008, "invalid_request"),
        (
            [{"text": " ", "context_id": "a", "voice_settings": {"stability": 3}}],
            1008,
            "invalid_request",
        ),
        (
            [
                {"text": "word " * 300, "context_id": "a"},
                {"text": "word " * 120, "context_id": "a"},
            ],
            1009,
            "text_too_long",
        ),
        (["{" + " " * 70_000 + "}"], 1009, "payload_too_large"),
    ],
)
async def test_multi_stream_bad_messages(
    server: RunningServer, messages: list[Message], code: int, error: str
) -> None:
    received, close_code = await _exchange(server, MULTI, messages)
    assert close_code == code
    assert received[-1]["error"] == error and received[-1]["message"]


# --- Scribe realtime, through the official SDK ----------------------------------------------


class ScribeEvents:
    """Everything the SDK's connection reports, with a way to wait for what a test expects."""

    def __init__(self, conn: RealtimeConnection) -> None:
        self.messages: list[dict[str, Any]] = []
        self.close_info: dict[str, Any] | None = None
        self._changed = asyncio.Event()
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for event in RealtimeEvents:
            if event not in (RealtimeEvents.OPEN, RealtimeEvents.CLOSE, RealtimeEvents.ERROR):
                conn.on(event, self._record)
        conn.on(RealtimeEvents.CLOSE, self._on_close)

    def _record(self, data: dict[str, Any]) -> None:
        self.messages.append(data)
        self._changed.set()

    def _on_close(self, info: dict[str, Any]) -> None:
        self.close_info = info
        if not self._closed.done():
            self._closed.set_result(None)
        self._changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("message_type") == kind]

    def texts(self, kind: str = "committed_transcript") -> list[str]:
        return [m["text"] for m in self.of(kind)]

    async def wait_for(self, pred: Callable[[], Any], within: float = 60.0) -> Any:
        return await wait_for_change(
            pred,
            self._changed,
            self._closed,
            within=within,
            describe=lambda: f"close {self.close_info}; got {self.messages[-4:]}",
        )


async def _speech(client: AsyncElevenLabs, text: str, fmt: str) -> bytes:
    return b"".join(
        [c async for c in client.text_to_speech.convert("slt", text=text, output_format=fmt)]
    )


def _silence(seconds: float, rate: int, *, ulaw: bool = False) -> bytes:
    # μ-law's zero is 0xFF; PCM's is two zero bytes.
    return b"\xff" * int(seconds * rate) if ulaw else bytes(int(seconds * rate) * 2)


async def _send_audio(conn: RealtimeConnection, audio: bytes, chunk: int, **extra: Any) -> None:
    for i in range(0, len(audio), chunk):
        part = base64.b64encode(audio[i : i + chunk]).decode()
        await conn.send({"audio_base_64": part, **(extra if i == 0 else {})})


async def test_scribe_realtime_manual_commits(client: AsyncElevenLabs) -> None:
    refs = sentences()[6:9]
    conn = await client.speech_to_text.realtime.connect(
        {
            "model_id": "scribe_v2_realtime",
            "audio_format": AudioFormat.PCM_16000,
            "sample_rate": 16000,
            "commit_strategy": CommitStrategy.MANUAL,
            "include_timestamps": True,
        }
    )
    events = ScribeEvents(conn)
    durations = []
    try:
        started = (await events.wait_for(lambda: events.of("session_started")))[0]
        assert started["config"]["commit_strategy"] == "manual"
        assert started["config"]["audio_format"] == "pcm_16000" and started["session_id"]
        for i, text in enumerate(refs):
            pcm = _silence(0.3, 16000) + await _speech(client, text, "pcm_16000")
            pcm += _silence(0.6, 16000)
            durations.append(len(pcm) / 2 / 16000)
            extra = {"previous_text": "Let me say this."} if i == 0 else {}
            await _send_audio(conn, pcm, 3200, **extra)
            await conn.commit()
            await events.wait_for(lambda n=i + 1: len(events.of("committed_transcript")) >= n)
        await events.wait_for(lambda: len(events.of("committed_transcript_with_timestamps")) >= 3)
    finally:
        await conn.close()
    committed = events.texts()
    assert len(committed) == 3 and corpus_wer(refs, committed) <= 0.35, committed
    assert any(m["text"] for m in events.of("partial_transcript"))
    stamped = events.of("committed_transcript_with_timestamps")
    assert [m["text"] for m in stamped] == committed
    assert all(m["language_code"] == "en" for m in stamped)
    starts = [[w["start"] for w in m["words"] if w["type"] == "word"] for m in stamped]
    flat = [s for seg in starts for s in seg]
    assert flat == sorted(flat)
    # Times run from the start of the session, across commits.
    assert starts[2] and min(starts[2]) >= durations[0] + durations[1] - 0.05
    assert not [m for m in events.messages if "error" in m], events.messages


async def test_scribe_realtime_vad_commits_resampled_audio(client: AsyncElevenLabs) -> None:
    refs = sentences()[9:12]
    conn = await client.speech_to_text.realtime.connect(
        {
            "model_id": "scribe_v2_realtime",
            "audio_format": AudioFormat.PCM_24000,
            "sample_rate": 24000,
            "commit_strategy": CommitStrategy.VAD,
            "vad_silence_threshold_secs": 0.5,
        }
    )
    events = ScribeEvents(conn)
    try:
        started = (await events.wait_for(lambda: events.of("session_started")))[0]
        assert started["config"]["sample_rate"] == 24000
        assert started["config"]["vad_silence_threshold_secs"] == 0.5
        audio = b"".join(
            [await _speech(client, text, "pcm_24000") + _silence(1.0, 24000) for text in refs]
        )
        await _send_audio(conn, audio + _silence(1.0, 24000), 4800)
        # No commit is sent: the VAD commits each utterance once its silence is heard.
        whole = " ".join(refs)
        await events.wait_for(
            lambda: (
                len(events.texts()) >= 3 and corpus_wer([whole], [" ".join(events.texts())]) <= 0.35
            )
        )
    finally:
        await conn.close()
    assert all(events.texts()), "VAD commits only utterances with words"
    assert not [m for m in events.messages if "error" in m], events.messages


async def test_scribe_realtime_ulaw(client: AsyncElevenLabs) -> None:
    conn = await client.speech_to_text.realtime.connect(
        {
            "model_id": "scribe_v2_realtime",
            "audio_format": AudioFormat.ULAW_8000,
            "sample_rate": 8000,
        }
    )
    events = ScribeEvents(conn)
    try:
        started = (await events.wait_for(lambda: events.of("session_started")))[0]
        assert (started["config"]["audio_format"], started["config"]["sample_rate"]) == (
            "ulaw_8000",
            8000,
        )
        speech = await _speech(client, sentences()[0], "ulaw_8000")
        await _send_audio(conn, _silence(0.3, 8000, ulaw=True) + speech, 800)
        await conn.commit()
        await events.wait_for(lambda: events.of("committed_transcript"))
    finally:
        await conn.close()
    # Narrowband speech is beyond the bundled wideband model's accuracy: words, not which.
    assert normalize(events.texts()[0]), events.messages
    assert not [m for m in events.messages if "error" in m], events.messages


async def test_scribe_realtime_commit_without_speech(client: AsyncElevenLabs) -> None:
    conn = await client.speech_to_text.realtime.connect(
        {
            "model_id": "scribe_v2_realtime",
            "audio_format": AudioFormat.PCM_16000,
            "sample_rate": 16000,
        }
    )
    events = ScribeEvents(conn)
    try:
        await events.wait_for(lambda: events.of("session_started"))
        await conn.commit()  # nothing at all
        await _send_audio(conn, _silence(1.0, 16000), 3200)
        await conn.commit()  # only silence
        await events.wait_for(lambda: len(events.of("committed_transcript")) >= 2)
    finally:
        await conn.close()
    assert events.texts() == ["", ""]


async def test_scribe_sdk_connect_with_a_bad_option_raises(client: AsyncElevenLabs) -> None:
    with pytest.raises(websockets.InvalidStatus) as info:
        await client.speech_to_text.realtime.connect(
            {
                "model_id": "scribe_v1_nope",
                "audio_format": AudioFormat.PCM_16000,
                "sample_rate": 16000,
            }
        )
    assert info.value.response.status_code == 422


# --- Scribe realtime: keys and bad input, with raw websockets -------------------------------


def _chunk(**fields: Any) -> str:
    body = {"message_type": "input_audio_chunk", "audio_base_64": "", "commit": False}
    return json.dumps(body | {"sample_rate": 16000} | fields)


async def test_scribe_bad_messages_are_reported_and_the_session_goes_on(
    server: RunningServer,
) -> None:
    url = f"{server.ws_url}{SCRIBE}?model_id=scribe_v2_realtime&audio_format=pcm_16000"
    bad: list[tuple[str | bytes, str]] = [
        ("{not json", "input_error"),
        ('{"message_type": "input_audio_chunk", "audio_base_64": "AAAB', "input_error"),
        ("[]", "input_error"),
        (b"\x00\x01", "input_error"),
        (json.dumps({"message_type": "commit"}), "input_error"),
        (_chunk(audio_base_64="%%%"), "input_error"),
        (_chunk(audio_base_64=5), "input_error"),
        (_chunk(commit="yes"), "input_error"),
        (_chunk(sample_rate=44100), "input_error"),
        (_chunk(audio_base_64=base64.b64encode(b"\x00").decode()), "input_error"),  # odd bytes
        (_chunk(previous_text="too late"), "input_error"),
        (_chunk(audio_base_64="A" * 70_000), "chunk_size_exceeded"),
    ]
    async with websockets.connect(url, additional_headers={"xi-api-key": server.api_key}) as ws:
        assert json.loads(await ws.recv())["message_type"] == "session_started"
        await ws.send(_chunk(audio_base_64=base64.b64encode(bytes(3200)).decode()))
        for message, kind in bad:
            await ws.send(message)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert reply["message_type"] == kind and reply["error"], (message[:60], reply)
        await ws.send(_chunk(commit=True))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert reply == {"message_type": "committed_transcript", "text": ""}
    assert ws.close_code == 1000


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("", "missing API key"),
        ("&token=single-use", "single-use tokens"),
        ("&authorization=Bearer%20sk_not_a_key", "invalid or revoked"),
    ],
)
async def test_scribe_refuses_missing_and_bad_keys(
    server: RunningServer, query: str, error: str
) -> None:
    url = f"{server.ws_url}{SCRIBE}?model_id=scribe_v2_realtime{query}"
    async with websockets.connect(url) as ws:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
    assert reply["message_type"] == "auth_error" and error in reply["error"]
    assert ws.close_code == 1008


async def test_scribe_key_in_the_query(server: RunningServer) -> None:
    url = f"{server.ws_url}{SCRIBE}?model_id=scribe_v2_realtime&authorization={server.api_key}"
    async with websockets.connect(url) as ws:
        started = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert started["message_type"] == "session_started"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "model_id=scribe_v2_realtime&audio_format=mp3_44100_128",
        "model_id=scribe_v2_realtime&language_code=de",
        "model_id=scribe_v2_realtime&commit_strategy=sometimes",
        "model_id=scribe_v2_realtime&vad_threshold=2",
    ],
)
async def test_scribe_rejected_before_upgrade(server: RunningServer, query: str) -> None:
    url = f"{server.ws_url}{SCRIBE}?{query}"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(url, additional_headers={"xi-api-key": server.api_key}):
            pass
    assert info.value.response.status_code == 422
    assert json.loads(info.value.response.body or b"{}")["detail"][0]["msg"]


# --- clients that vanish mid-stream ---------------------------------------------------------


async def _until_no_active(server: RunningServer, kind: str) -> None:
    gauge = server.app[METRICS].active_streams.labels(kind)
    for _ in range(600):  # the handler's cleanup has no event to wait on: poll the gauge
        if gauge._value.get() == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{kind} streams still open")


async def test_hang_up_mid_stream_leaks_nothing(server: RunningServer) -> None:
    headers = {"xi-api-key": server.api_key}
    long_text = "The weather is nice today. " * 20
    async with websockets.connect(
        f"{server.ws_url}{MULTI}?{PCM}", additional_headers=headers
    ) as ws:
        for c in ("a", "b"):
            await ws.send(json.dumps({"text": long_text, "context_id": c, "flush": True}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["audio"]
    await _until_no_active(server, "tts_elevenlabs_multi_ws")

    url = f"{server.ws_url}{SCRIBE}?model_id=scribe_v2_realtime"
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.recv()  # session_started
        await ws.send(_chunk(audio_base_64=base64.b64encode(bytes(32000)).decode()))
    await _until_no_active(server, "stt_elevenlabs_ws")
