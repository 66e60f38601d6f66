"""Phone calls over Telnyx and Vonage media streams, replayed from real-shaped frames against the
real server.

* Telnyx (JSON text frames, G.711 at 8 kHz, PCMU and PCMA): the TeXML answer with a ticket,
  speech and DTMF in, paced agent speech, marks and ``clear`` out.
* Vonage (binary L16 frames at 16 kHz, or 8 kHz; JSON text events): the NCCO answer, speech both
  ways, DTMF, ``notify`` marks and ``clear``.

Both ways the words are checked: the caller speaks with a natural voice (Piper) in the carrier's
codec and the stored user turn must be its question word for word; what the agent says down the
line is transcribed by our own STT at the call's rate (8 kHz μ-law, A-law or L16; 16 kHz L16)
and must carry the key words of what it was meant to say. The G.711 law and the length of the
agent's audio are checked against our TTS saying the same text (``server/phone_audio.py``).

Twilio's signed voice webhook is in ``test_twilio_signature.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest

from helpers import corpus_wer, normalize, sentences
from server.phone_audio import (
    caller_says,
    law_loudness_ratio,
    phone_line,
    stored_conversation,
    synthesize,
    transcribe,
    word_errors,
    words,
)
from server.waiting import SocketRecorder
from voicestream.media.g711 import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16

GREETING = "Hello, thanks for calling. How can I help you?"
OPENING_HOURS = "Our office is open from nine in the morning to five in the evening on weekdays."
PARKING = "Parking is free in the garage behind the building for all visitors."
LONG_GREETING = (
    "Welcome to the museum. The tour takes about two hours. It starts in the main hall, "
    "continues through the painting gallery and the sculpture garden, and ends at the gift shop "
    "near the entrance. Guides speak English and German, and groups are limited to twenty people."
)
STREAM_ID = "32de0dea-53cb-4b21-89a4-9e1819c043bc"
CODECS = {
    "PCMU": ("ulaw_8000", pcm16_to_ulaw, ulaw_to_pcm16),
    "PCMA": ("alaw_8000", pcm16_to_alaw, alaw_to_pcm16),
}
G711_FRAME = 160  # 20 ms at 8 kHz
PCM16K_FRAME = 640  # 20 ms of 16 kHz s16le
MAX_WER = 0.15  # Whisper on Piper at 16 kHz: about 4 %
QUESTION = "What time is the office open?"
# What our STT must hear in the agent's audio (Whisper may say "for nine" or "Hello." here).
GREETING_WORDS = {"hello", "thanks", "calling", "help"}
HOURS_WORDS = {"office", "open", "nine", "morning", "five", "evening", "weekdays"}


# ---- a carrier's side of the call, from the wire protocol only ------------------------------


class PhoneCall(SocketRecorder):
    """Telnyx: JSON text frames only. Vonage: binary PCM frames and JSON text actions."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, carrier: str, frame: int) -> None:
        self.carrier = carrier
        self.frame = frame  # bytes of one 20 ms frame on the wire
        self.messages: list[dict[str, Any]] = []  # JSON text frames from the server
        self.times: list[float] = []
        self.audio = bytearray()  # agent audio in the wire codec
        self.media_times: list[float] = []
        super().__init__(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            now = time.monotonic()
            if msg.type == aiohttp.WSMsgType.BINARY:
                assert self.carrier == "vonage", "Telnyx only takes text frames"
                self._audio(msg.data, now)
            else:
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                body = json.loads(msg.data)
                if body.get("event") == "media":
                    assert set(body) == {"event", "media"} and set(body["media"]) == {"payload"}
                    self._audio(base64.b64decode(body["media"]["payload"], validate=True), now)
                self.messages.append(body)
                self.times.append(now)
            self._changed.set()

    def _audio(self, data: bytes, now: float) -> None:
        assert len(data) == self.frame, len(data)
        self.audio += data
        self.media_times.append(now)

    def of(self, key: str, value: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get(key) == value]

    def describe(self) -> str:
        return f"close {self.ws.close_code}; last: {self.messages[-3:]}"

    async def send(self, body: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(body))

    async def speak(self, audio: bytes, *, realtime: bool = False) -> None:
        for n, i in enumerate(range(0, len(audio), self.frame), start=1):
            chunk = audio[i : i + self.frame]
            if self.carrier == "vonage":
                await self.ws.send_bytes(chunk)
            else:
                payload = base64.b64encode(chunk).decode()
                media = {"track": "inbound", "chunk": str(n), "timestamp": str(n * 20)}
                body = {"event": "media", "sequence_number": str(n + 1), "stream_id": STREAM_ID}
                await self.send({**body, "media": {**media, "payload": payload}})
            if realtime:
                await asyncio.sleep(0.02)

    def media_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.media_times if start < t < end)


def _telnyx_start(encoding: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    start = {
        "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
        "call_control_id": "v3:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",
        "call_session_id": "ff55a038-6f5d-11ef-9692-02420aeffb1f",
        "from": "+13122010094",
        "to": "+13122123456",
        "custom_parameters": params or {},
        "media_format": {"encoding": encoding, "sample_rate": 8000, "channels": 1},
    }
    return {"event": "start", "sequence_number": "1", "stream_id": STREAM_ID, "start": start}


async def _telnyx_call(s: aiohttp.ClientSession, url: str, **kw: Any) -> PhoneCall:
    call = PhoneCall(await s.ws_connect(url, **kw), "telnyx", G711_FRAME)
    await call.send({"event": "connected", "version": "1.0.0"})
    return call


async def _vonage_call(
    s: aiohttp.ClientSession, url: str, rate: int = 16000, **kw: Any
) -> PhoneCall:
    call = PhoneCall(await s.ws_connect(url, **kw), "vonage", rate // 50 * 2)
    return call


def _vonage_connected(rate: int = 16000, **headers: str) -> dict[str, Any]:
    return {"event": "websocket:connected", "content-type": f"audio/l16;rate={rate}", **headers}


# ---- the server's REST side -----------------------------------------------------------------


async def _agent(server, s: aiohttp.ClientSession, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "phone desk",
        "instructions": "Answer caller questions.",
        "knowledge": [OPENING_HOURS, PARKING],
        **extra,
    }
    async with s.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r:
        assert r.status == 201, await r.text()
        agent: dict[str, Any] = await r.json()
        return agent


async def _texml_url(server, s: aiohttp.ClientSession, agent_id: str) -> str:
    async with s.post(
        f"{server.url}/v1/telephony/telnyx/voice",
        params={"agent_id": agent_id},
        data={"CallSid": "v3:abc", "From": "+13122010094", "To": "+13122123456"},
        headers=server.headers(),
    ) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "text/xml"
        root = ET.fromstring(await r.text())
    stream = root.find("./Connect/Stream")
    assert root.tag == "Response" and stream is not None
    assert stream.attrib["bidirectionalMode"] == "rtp"  # or Telnyx plays nothing back
    return stream.attrib["url"]


async def _ncco_endpoint(
    server, s: aiohttp.ClientSession, agent_id: str, method: str = "GET"
) -> dict[str, Any]:
    async with s.request(
        method,
        f"{server.url}/v1/telephony/vonage/answer",
        params={"agent_id": agent_id, "from": "447700900000", "uuid": "63f61863"},
        headers=server.headers(),
    ) as r:
        assert r.status == 200, await r.text()
        ncco = await r.json()
    (action,) = ncco
    assert action["action"] == "connect"
    (endpoint,) = action["endpoint"]
    assert endpoint["type"] == "websocket"
    return dict(endpoint)


def _ticket_of(url: str) -> str:
    (ticket,) = parse_qs(urlsplit(url).query)["ticket"]
    return ticket


def _without_ticket(url: str) -> str:
    parts = urlsplit(url)
    query = {k: v for k, v in parse_qs(parts.query).items() if k != "ticket"}
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True)))


# ---- Telnyx ---------------------------------------------------------------------------------


async def test_texml_answer_carries_a_ticketed_stream_url(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        url = await _texml_url(server, s, agent["id"])
        assert url.startswith(f"{server.ws_url}/v1/telephony/telnyx?")
        query = parse_qs(urlsplit(url).query)
        assert query["agent_id"] == [agent["id"]] and _ticket_of(url).count(".") == 2
        # Behind a TLS-terminating proxy the stream URL is wss:// on the public host.
        async with s.post(
            f"{server.url}/v1/telephony/telnyx/voice",
            data={"agent_id": agent["id"]},
            headers={
                **server.headers(),
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "voice.example.com",
            },
        ) as r:
            assert r.status == 200
            stream = ET.fromstring(await r.text()).find("./Connect/Stream")
        assert stream is not None
        assert stream.attrib["url"].startswith("wss://voice.example.com/v1/telephony/telnyx?")
        voice = f"{server.url}/v1/telephony/telnyx/voice"
        async with s.post(voice, data={"agent_id": agent["id"]}) as r:
            assert r.status == 401 and "error" in await r.json()
        async with s.post(voice, headers=server.headers()) as r:
            assert r.status == 422 and "agent_id" in (await r.json())["error"]["message"]
        missing = "00000000-0000-0000-0000-000000000000"
        async with s.post(voice, data={"agent_id": missing}, headers=server.headers()) as r:
            assert r.status == 404


@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
async def test_telnyx_call_greets_answers_dtmf_and_speech(server, encoding: str) -> None:
    fmt, encode, decode = CODECS[encoding]
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s, first_message=GREETING)
        question = phone_line(await caller_says(server, s, QUESTION), encode)
        reference = await synthesize(server, s, GREETING, "pcm_8000")
        url = await _texml_url(server, s, agent["id"])
        if encoding == "PCMA":  # the ticket may also travel in the start's custom parameters
            call = await _telnyx_call(s, _without_ticket(url))
            await call.send(_telnyx_start(encoding, {"ticket": _ticket_of(url)}))
        else:
            call = await _telnyx_call(s, url)
            await call.send(_telnyx_start(encoding))
        started = time.monotonic()
        mark = await call.wait_for(lambda: call.of("event", "mark"))
        elapsed = time.monotonic() - started
        greeting = bytes(call.audio)
        seconds, expected = len(greeting) / 8000, len(reference) / 16000
        # As long as our TTS saying the same text (Piper's durations vary by a few per cent).
        assert 0.8 * expected < seconds < 1.25 * expected + 0.2, (seconds, expected)
        assert elapsed > seconds - 0.5, (elapsed, seconds)  # paced at playback speed
        assert call.messages.index(mark[0]) == len(call.messages) - 1  # after the last frame
        # It went out in the call's G.711 law: decoded with it, it is as loud as our linear
        # PCM of the same text (about 1.0; decoded with the other law about 3.5-4, see
        # law_loudness_ratio) ...
        ratio = law_loudness_ratio(decode(greeting), reference)
        assert 0.7 < ratio < 1.4, ratio
        # ... and it says the greeting.
        heard = await transcribe(server, s, greeting, fmt)
        assert GREETING_WORDS <= words(heard), heard

        # Telnyx echoes the mark once played; the server takes it silently.
        await call.send({"event": "mark", "stream_id": STREAM_ID, "mark": mark[0]["mark"]})
        before = len(call.audio)
        await call.send({"event": "dtmf", "stream_id": STREAM_ID, "dtmf": {"digit": "1"}})
        await call.wait_for(lambda: len(call.of("event", "mark")) >= 2)
        assert len(call.audio) - before > 8000 * 0.5  # the agent answered out loud

        silence = phone_line(bytes(32000), encode)
        await call.speak(silence[:4000] + question + silence + silence)
        await call.wait_for(lambda: len(call.of("event", "mark")) >= 3, within=60)
        await call.send({"event": "stop", "stream_id": STREAM_ID, "stop": {}})
        assert await call.closed() == 1000
        _, turns = await stored_conversation(
            server, s, agent["id"], lambda status, turns: status == "ended" and len(turns) >= 5
        )
    assert turns[:2] == [("agent", GREETING), ("user", "I pressed 1")]
    assert turns[2][0] == "agent" and turns[2][1]
    # The caller's question, heard through the phone line word for word, and its answer.
    role, said = turns[3]
    assert role == "user" and normalize(said) == normalize(QUESTION), said
    assert turns[4] == ("agent", OPENING_HOURS)


async def test_speaking_over_the_agent_on_telnyx_sends_clear(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s, first_message=LONG_GREETING)
        speech = await caller_says(server, s, "Wait, when is the office open?")
        call = await _telnyx_call(s, await _texml_url(server, s, agent["id"]))
        await call.send(_telnyx_start("PCMU"))
        await call.wait_for(lambda: len(call.audio) > 8000 * 1.5)
        await call.speak(phone_line(speech, pcm16_to_ulaw), realtime=True)
        clear = await call.wait_for(lambda: call.of("event", "clear"))
        assert clear[0] == {"event": "clear"}
        stopped_at = call.times[call.messages.index(clear[0])]
        await call.speak(b"\xff" * 8000, realtime=True)
        # Nothing of the interrupted greeting follows the clear: no frame (Telnyx would play
        # it), no mark (the greeting was not played out). The answer cannot come this early:
        # the caller is still speaking for a second after the clear.
        assert call.media_between(stopped_at, stopped_at + 0.8) == 0
        after = call.messages[call.messages.index(clear[0]) + 1 :]
        answer_starts = next((i for i, m in enumerate(after) if m["event"] == "media"), len(after))
        assert all(m["event"] != "mark" for m in after[:answer_starts]), after
        await call.ws.close()
        await call.closed()


def _oversized_media() -> str:
    payload = base64.b64encode(b"\xff" * 60_000).decode()  # > 64 KiB once base64
    return json.dumps({"event": "media", "stream_id": STREAM_ID, "media": {"payload": payload}})


@pytest.mark.parametrize(
    ("frame", "close"),
    [
        ("{nope", 1007),
        ('{"event":"media","stream_id":"' + STREAM_ID + '","media":{"payload":"@@"}}', 1007),
        ('{"event":"dance","stream_id":"' + STREAM_ID + '"}', 1002),
        ('{"event":"media","stream_id":"' + STREAM_ID + '","media":{"payload":7}}', 1002),
        ('{"event":"dtmf","stream_id":"another","dtmf":{"digit":"1"}}', 1002),
        ('{"event":"dtmf","stream_id":"' + STREAM_ID + '","dtmf":{"digit":"!"}}', 1002),
        (json.dumps(_telnyx_start("PCMU")), 1002),  # a second start
        (b"\xff" * G711_FRAME, 1002),  # Telnyx never sends binary frames
        (_oversized_media(), 1009),
    ],
)
async def test_bad_telnyx_frames_close_with_a_reason(
    server, frame: str | bytes, close: int
) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        call = await _telnyx_call(s, await _texml_url(server, s, agent["id"]))
        await call.send(_telnyx_start("PCMU"))
        await call.send({"event": "mark", "stream_id": STREAM_ID, "mark": {"name": "x"}})
        if isinstance(frame, bytes):
            await call.ws.send_bytes(frame)
        else:
            await call.ws.send_str(frame)
        assert await call.closed() == close
        assert call.messages == []


async def test_telnyx_calls_without_a_valid_ticket_are_refused(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        other = await _agent(server, s)
        url = await _texml_url(server, s, agent["id"])
        refused = [
            (_without_ticket(url), None),  # no ticket, no key
            (_without_ticket(url), {"ticket": "not-a-ticket"}),
            (
                _without_ticket(url),
                {"ticket": _ticket_of(await _texml_url(server, s, other["id"]))},
            ),
        ]
        for stream_url, params in refused:
            call = await _telnyx_call(s, stream_url)
            await call.send(_telnyx_start("PCMU", params))
            assert await call.closed() == 1008
            assert call.messages == []
        # An unsupported codec is refused before anything else (invalid audio: 1007).
        call = await _telnyx_call(s, url)
        start = _telnyx_start("PCMU")
        start["start"]["media_format"] = {"encoding": "L16", "sample_rate": 16000, "channels": 1}
        await call.send(start)
        assert await call.closed() == 1007
        # Media before start is out of order.
        call = await _telnyx_call(s, url)
        await call.speak(b"\xff" * G711_FRAME)
        assert await call.closed() == 1002


# ---- Vonage ---------------------------------------------------------------------------------


async def test_ncco_answer_connects_a_ticketed_websocket(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        for method in ("GET", "POST"):
            endpoint = await _ncco_endpoint(server, s, agent["id"], method)
            assert endpoint["content-type"] == "audio/l16;rate=16000"
            assert endpoint["uri"].startswith(f"{server.ws_url}/v1/telephony/vonage?")
            assert parse_qs(urlsplit(endpoint["uri"]).query)["agent_id"] == [agent["id"]]
            assert _ticket_of(endpoint["uri"]).count(".") == 2
            assert endpoint["headers"] == {"agent_id": agent["id"]}
        answer = f"{server.url}/v1/telephony/vonage/answer"
        async with s.get(answer, params={"agent_id": agent["id"]}) as r:
            assert r.status == 401 and "error" in await r.json()
        async with s.get(answer, headers=server.headers()) as r:
            assert r.status == 422
        missing = "00000000-0000-0000-0000-000000000000"
        async with s.get(answer, params={"agent_id": missing}, headers=server.headers()) as r:
            assert r.status == 404


async def test_vonage_call_speaks_hears_and_takes_dtmf_in_wideband(server) -> None:
    greeting_sentences = sentences()[:3]
    greeting_text = " ".join(greeting_sentences)
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s, first_message=greeting_text)
        question = await caller_says(server, s, QUESTION)
        endpoint = await _ncco_endpoint(server, s, agent["id"])
        call = await _vonage_call(s, endpoint["uri"])
        await call.send(_vonage_connected(**endpoint["headers"]))

        # The greeting: binary 20 ms frames at playback pace, then a notify mark.
        started = time.monotonic()
        notify = await call.wait_for(lambda: call.of("action", "notify"), within=60)
        elapsed = time.monotonic() - started
        greeting = bytes(call.audio)
        assert elapsed > len(greeting) / 32000 - 0.5  # paced at playback speed
        assert notify[0] == {"action": "notify", "payload": {"name": "utt-1"}}
        heard = await transcribe(server, s, greeting, "pcm_16000")
        wer = corpus_wer([greeting_text], [heard])
        assert wer <= MAX_WER, (wer, heard)

        # Vonage echoes the notify once played; then a key press.
        await call.send({"event": "websocket:notify", "payload": notify[0]["payload"]})
        before = len(call.audio)
        await call.send({"event": "websocket:dtmf", "digit": "5", "duration": 260})
        await call.wait_for(lambda: len(call.of("action", "notify")) >= 2, within=60)
        assert len(call.audio) - before > 32000 * 0.5

        # A spoken question, as the caller's phone streams it: the answer comes from the
        # documents and says the right words.
        await call.send({"event": "websocket:notify", "payload": {"name": "utt-2"}})
        before = len(call.audio)
        silence = bytes(32000)
        await call.speak(silence[:8000] + question + silence + silence)
        await call.wait_for(lambda: len(call.of("action", "notify")) >= 3, within=60)
        answer = bytes(call.audio[before:])
        said_down_the_line = await transcribe(server, s, answer, "pcm_16000")
        assert HOURS_WORDS <= words(said_down_the_line), said_down_the_line

        # Vonage has no stop event: the caller hanging up closes the socket, and that ends
        # the conversation.
        await call.ws.close()
        await call.closed()
        _, turns = await stored_conversation(
            server, s, agent["id"], lambda status, turns: status == "ended" and len(turns) >= 5
        )
    assert turns[0] == ("agent", greeting_text)
    assert turns[1] == ("user", "I pressed 5")
    assert turns[2][0] == "agent" and turns[2][1]
    role, said = turns[3]
    assert role == "user" and normalize(said) == normalize(QUESTION), said
    assert turns[4] == ("agent", OPENING_HOURS)


async def test_speaking_over_the_agent_on_vonage_sends_clear(server) -> None:
    # Not "where can I park my car": Whisper heard "part my car" in 1 of 20 fresh syntheses,
    # and then the agent rightly does not know the answer.
    interruption = "Wait, is there parking for visitors?"
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s, first_message=LONG_GREETING)
        speech = await caller_says(server, s, interruption)
        call = await _vonage_call(s, (await _ncco_endpoint(server, s, agent["id"]))["uri"])
        await call.send(_vonage_connected())
        await call.wait_for(lambda: len(call.audio) > 32000 * 1.5)
        await call.speak(speech, realtime=True)
        clear = await call.wait_for(lambda: call.of("action", "clear"))
        assert clear[0] == {"action": "clear"}
        stopped_at = call.times[call.messages.index(clear[0])]
        await call.send({"event": "websocket:cleared"})  # Vonage confirms: taken silently
        await call.speak(bytes(32000), realtime=True)
        # Nothing of the interrupted greeting follows the clear: no frame, and no notify, which
        # would say it was played out; the first notify marks the end of the answer.
        assert call.media_between(stopped_at, stopped_at + 0.8) == 0
        (notify,) = await call.wait_for(lambda: call.of("action", "notify"), within=60)
        notified_at = call.times[call.messages.index(notify)]
        assert call.media_between(stopped_at, notified_at) > 50 * 0.5, "notify before the answer"
        await call.ws.close()
        await call.closed()
        _, turns = await stored_conversation(
            server, s, agent["id"], lambda status, turns: len(turns) >= 3
        )
    # The greeting was cut short; the words that cut it were heard, and answered.
    (role, cut), (user, said), answer = turns
    assert role == "agent" and cut, cut
    # Two words may differ here: "Wait", spoken over the agent, came back as "Wake" in about 1
    # run in 25, once together with the homophone "their" for "there" (Piper draws fresh noise
    # every synthesis). The plain questions above came back exact in every run, and the answer
    # below proves the question was understood.
    assert user == "user" and word_errors(interruption, said) <= 2, said
    assert answer == ("agent", PARKING), turns


async def test_vonage_with_an_api_key_and_narrowband_audio(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s, first_message=GREETING)
        reference = await synthesize(server, s, GREETING, "pcm_8000")
        url = _without_ticket((await _ncco_endpoint(server, s, agent["id"]))["uri"])
        # A key header stands in for the ticket; 8 kHz comes as 320-byte frames both ways.
        call = await _vonage_call(s, url, rate=8000, headers=server.headers())
        await call.send(_vonage_connected(rate=8000))
        await call.wait_for(lambda: call.of("action", "notify"))
        greeting = bytes(call.audio)
        # 8 kHz L16, not 16 kHz squeezed into 8 kHz frames: as long as our TTS saying the
        # same text at 8 kHz, and it says the greeting when heard at 8 kHz.
        seconds, expected = len(greeting) / 16000, len(reference) / 16000
        assert 0.8 * expected < seconds < 1.25 * expected + 0.2, (seconds, expected)
        heard = await transcribe(server, s, greeting, "pcm_8000")
        assert GREETING_WORDS <= words(heard), heard
        await call.send({"event": "websocket:dtmf", "dtmf": {"digits": "42", "duration": 250}})
        await call.wait_for(lambda: len(call.of("action", "notify")) >= 2)
        await call.ws.close()
        await call.closed()
        _, turns = await stored_conversation(
            server, s, agent["id"], lambda status, turns: len(turns) >= 2
        )
    assert turns[1] == ("user", "I pressed 4 2")


@pytest.mark.parametrize(
    ("first", "then", "close"),
    [
        (b"\x00" * PCM16K_FRAME, None, 1002),  # audio before websocket:connected
        (json.dumps(_vonage_connected()).encode(), None, 1002),  # connected sent as binary
        (json.dumps(_vonage_connected(rate=44100)), None, 1007),
        ('{"event":"websocket:conn', None, 1007),  # truncated
        (json.dumps(_vonage_connected()), b"\x00\x01\x02", 1007),  # half a sample
        (json.dumps(_vonage_connected()), "\x01\x02 raw audio as text", 1007),
        (json.dumps(_vonage_connected()), '{"event":"websocket:dance"}', 1002),
        (json.dumps(_vonage_connected()), '{"event":"websocket:dtmf","digit":7}', 1002),
        (json.dumps(_vonage_connected()), b"\x00" * 70_000, 1009),  # over the message limit
    ],
)
async def test_bad_vonage_frames_close_with_a_reason(
    server, first: str | bytes, then: str | bytes | None, close: int
) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        call = await _vonage_call(s, (await _ncco_endpoint(server, s, agent["id"]))["uri"])
        for frame in (first, then):
            if isinstance(frame, bytes):
                await call.ws.send_bytes(frame)
            elif frame is not None:
                await call.ws.send_str(frame)
        assert await call.closed() == close
        assert call.audio == bytearray()


async def test_vonage_calls_without_a_valid_ticket_are_refused(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        uri = (await _ncco_endpoint(server, s, agent["id"]))["uri"]
        for url, headers in [
            (_without_ticket(uri), {}),
            (_without_ticket(uri), {"ticket": "not-a-ticket"}),  # as an NCCO header
        ]:
            call = await _vonage_call(s, url)
            await call.send(_vonage_connected(**headers))
            assert await call.closed() == 1008
            assert call.audio == bytearray()
        # A valid ticket may also come as an NCCO header, that is inside websocket:connected.
        call = await _vonage_call(s, _without_ticket(uri))
        await call.send(_vonage_connected(ticket=_ticket_of(uri)))
        await call.send({"event": "websocket:dtmf", "digit": "9"})
        await call.wait_for(lambda: call.of("action", "notify"))
        assert len(call.audio) > 32000 * 0.5
        await call.ws.close()
        assert await call.closed() == 1000
