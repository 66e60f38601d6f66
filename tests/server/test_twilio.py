"""Phone calls replayed over a real Twilio Media Streams socket to the real server: TwiML with a
ticket, μ-law speech and DTMF in, paced μ-law agent speech, marks and ``clear`` out.

The caller speaks with a natural voice (Piper) through an 8 kHz μ-law line, and the stored user
turn must be its question word for word; what the agent says down the line is transcribed by
our own STT at 8 kHz and must carry the greeting's and the answer's key words. Its G.711 law and
length are checked against our TTS saying the same text (``server/phone_audio.py``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
import pytest

from helpers import normalize
from server.phone_audio import (
    caller_says,
    law_loudness_ratio,
    phone_line,
    stored_conversation,
    synthesize,
    transcribe,
    words,
)
from server.waiting import SocketRecorder
from voicestream.media.g711 import pcm16_to_ulaw, ulaw_to_pcm16

GREETING = "Hello, thanks for calling. How can I help you?"
OPENING_HOURS = "Our office is open from nine in the morning to five in the evening on weekdays."
LONG_GREETING = (
    "Welcome to the museum. The tour takes about two hours. It starts in the main hall, "
    "continues through the painting gallery and the sculpture garden, and ends at the gift shop "
    "near the entrance. Guides speak English and German, and groups are limited to twenty people."
)
QUESTION = "What time is the office open?"
# What our STT must hear in the agent's audio (Whisper may say "for nine" or "Hello." here).
GREETING_WORDS = {"hello", "thanks", "calling", "help"}
HOURS_WORDS = {"office", "open", "nine", "morning", "five", "evening", "weekdays"}
SID = "MZ00000000000000000000000000000001"
FRAME = 160  # 20 ms of 8 kHz μ-law


class TwilioCall(SocketRecorder):
    """Plays Twilio's part of a Media Streams call, from the wire protocol only."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.messages: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.audio = bytearray()  # μ-law 8 kHz from the agent
        super().__init__(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            assert msg.type == aiohttp.WSMsgType.TEXT, msg  # Twilio only takes text frames
            body = json.loads(msg.data)
            assert body["streamSid"] == SID, body
            if body["event"] == "media":
                assert set(body["media"]) == {"payload"}
                payload = base64.b64decode(body["media"]["payload"], validate=True)
                assert len(payload) == FRAME
                self.audio += payload
            self.messages.append(body)
            self.times.append(time.monotonic())
            self._changed.set()

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["event"] == event]

    def describe(self) -> str:
        return f"close {self.ws.close_code}; last: {self.messages[-3:]}"

    async def send(self, body: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(body))

    async def start(self, ticket: str | None) -> None:
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        params = {} if ticket is None else {"ticket": ticket}
        await self.send(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": SID,
                "start": {
                    "streamSid": SID,
                    "accountSid": "AC" + "0" * 32,
                    "callSid": "CA" + "0" * 32,
                    "tracks": ["inbound"],
                    "customParameters": params,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )

    async def speak(self, ulaw: bytes, *, realtime: bool = False) -> None:
        for chunk, i in enumerate(range(0, len(ulaw), FRAME), start=1):
            payload = base64.b64encode(ulaw[i : i + FRAME]).decode()
            await self.send(
                {
                    "event": "media",
                    "streamSid": SID,
                    "media": {
                        "track": "inbound",
                        "chunk": str(chunk),
                        "timestamp": str(chunk * 20),
                        "payload": payload,
                    },
                }
            )
            if realtime:
                await asyncio.sleep(0.02)


async def _agent(server, s: aiohttp.ClientSession, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "phone desk",
        "instructions": "Answer caller questions.",
        "knowledge": [OPENING_HOURS],
        **extra,
    }
    async with s.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r:
        assert r.status == 201, await r.text()
        agent: dict[str, Any] = await r.json()
        return agent


async def _twiml(server, s: aiohttp.ClientSession, agent_id: str) -> tuple[str, str]:
    """The stream URL and ticket from the voice webhook's TwiML."""
    async with s.post(
        f"{server.url}/v1/telephony/twilio/voice",
        data={"agent_id": agent_id, "CallSid": "CA" + "0" * 32, "From": "+15551230000"},
        headers=server.headers(),
    ) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "text/xml"
        root = ET.fromstring(await r.text())
    stream = root.find("./Connect/Stream")
    assert root.tag == "Response" and stream is not None
    param = stream.find("./Parameter[@name='ticket']")
    assert param is not None
    return stream.attrib["url"], param.attrib["value"]


async def _call(server, s: aiohttp.ClientSession, agent_id: str, ticket: str | None) -> TwilioCall:
    url, real_ticket = await _twiml(server, s, agent_id)
    # Twilio sends no API key on the upgrade.
    call = TwilioCall(await s.ws_connect(url))
    await call.start(real_ticket if ticket == "real" else ticket)
    return call


def _caller_line(pcm16k: bytes) -> bytes:
    return phone_line(pcm16k, pcm16_to_ulaw)


async def test_twiml_carries_the_stream_url_and_a_ticket(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        url, ticket = await _twiml(server, s, agent["id"])
        assert url == f"{server.ws_url}/v1/telephony/twilio?agent_id={agent['id']}"
        assert ticket.count(".") == 2  # a JWT
        # Behind a TLS-terminating proxy the stream URL is wss:// on the public host.
        async with s.post(
            f"{server.url}/v1/telephony/twilio/voice",
            params={"agent_id": agent["id"]},
            headers={
                **server.headers(),
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "voice.example.com",
            },
        ) as r:
            assert r.status == 200
            stream = ET.fromstring(await r.text()).find("./Connect/Stream")
        assert stream is not None
        assert stream.attrib["url"].startswith("wss://voice.example.com/v1/telephony/twilio?")
        # The webhook itself needs a key, a known agent and an agent_id.
        voice = f"{server.url}/v1/telephony/twilio/voice"
        async with s.post(voice, data={"agent_id": agent["id"]}) as r:
            assert r.status == 401
        async with s.post(voice, headers=server.headers()) as r:
            assert r.status == 422
            assert "error" in await r.json()
        missing = "00000000-0000-0000-0000-000000000000"
        async with s.post(voice, data={"agent_id": missing}, headers=server.headers()) as r:
            assert r.status == 404


async def test_greeting_is_paced_mulaw_then_a_mark_and_dtmf_reaches_the_agent(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s, first_message=GREETING)
        reference = await synthesize(server, s, GREETING, "pcm_8000")
        call = await _call(server, s, agent["id"], "real")
        started = time.monotonic()
        mark = await call.wait_for(lambda: call.of("mark"))
        elapsed = time.monotonic() - started
        greeting = bytes(call.audio)
        seconds, expected = len(greeting) / 8000, len(reference) / 16000
        # As long as our TTS saying the same text (Piper's durations vary by a few per cent).
        assert 0.8 * expected < seconds < 1.25 * expected + 0.2, (seconds, expected)
        # Paced at playback speed: the whole greeting cannot arrive much faster than it plays.
        assert elapsed > seconds - 0.5, (elapsed, seconds)
        # Everything before the mark is the greeting; the mark comes after the last frame.
        assert call.messages.index(mark[0]) == len(call.messages) - 1
        # μ-law, not A-law: decoded as μ-law it is as loud as our linear PCM of the same text
        # (about 1.0; as A-law about 3.8, see law_loudness_ratio) ...
        ratio = law_loudness_ratio(ulaw_to_pcm16(greeting), reference)
        assert 0.7 < ratio < 1.4, ratio
        # ... and it says the greeting.
        heard = await transcribe(server, s, greeting, "ulaw_8000")
        assert GREETING_WORDS <= words(heard), heard

        # Twilio echoes the mark once played: the server takes it silently.
        await call.send({"event": "mark", "streamSid": SID, "mark": mark[0]["mark"]})
        before = len(call.audio)
        await call.send({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "1"}})
        await call.wait_for(lambda: len(call.of("mark")) >= 2)
        assert len(call.audio) - before > 8000 * 0.5  # the agent answered out loud
        await call.send({"event": "stop", "streamSid": SID, "stop": {"callSid": "CA"}})
        assert await call.closed() == 1000
        _, turns = await stored_conversation(
            server, s, agent["id"], lambda status, turns: status == "ended" and len(turns) >= 3
        )
    assert turns[0] == ("agent", GREETING)
    assert turns[1] == ("user", "I pressed 1")
    assert turns[2][0] == "agent" and turns[2][1]


async def test_a_callers_mulaw_question_is_heard_word_for_word_and_answered(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        question = _caller_line(await caller_says(server, s, QUESTION))
        call = await _call(server, s, agent["id"], "real")
        silence = b"\xff" * 8000
        await call.speak(silence[:4000] + question + silence + silence)
        await call.wait_for(lambda: call.of("mark"), within=30)
        answer = bytes(call.audio)
        await call.send({"event": "stop", "streamSid": SID})
        await call.closed()
        _, turns = await stored_conversation(
            server, s, agent["id"], lambda status, turns: len(turns) >= 2
        )
        # The answer that went down the line says the opening hours.
        heard = await transcribe(server, s, answer, "ulaw_8000")
    role, said = turns[0]
    assert role == "user" and normalize(said) == normalize(QUESTION), said
    assert turns[1] == ("agent", OPENING_HOURS)
    assert HOURS_WORDS <= words(heard), heard


async def test_speaking_over_the_agent_sends_clear(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s, first_message=LONG_GREETING)
        interruption = _caller_line(await caller_says(server, s, "Wait, when is the office open?"))
        call = await _call(server, s, agent["id"], "real")
        await call.wait_for(lambda: len(call.audio) > 8000 * 1.5)
        await call.speak(interruption, realtime=True)
        clear = await call.wait_for(lambda: call.of("clear"))
        assert clear[0] == {"event": "clear", "streamSid": SID}
        stopped_at = call.times[call.messages.index(clear[0])]
        await call.speak(b"\xff" * 8000, realtime=True)
        # Nothing of the interrupted greeting follows the clear: no frame (Twilio would play
        # it), no mark (Twilio would report the greeting played). The answer cannot come this
        # early: the caller is still speaking for a second after the clear.
        cleared = call.messages.index(clear[0])
        after = list(zip(call.times, call.messages, strict=True))[cleared + 1 :]
        assert [m for t, m in after if t < stopped_at + 0.8] == []
        answer_starts = next((i for i, (_, m) in enumerate(after) if m["event"] == "media"), None)
        assert all(m["event"] != "mark" for _, m in after[:answer_starts]), after
        await call.ws.close()
        await call.closed()


@pytest.mark.parametrize(
    ("ticket", "frame", "close"),
    [
        ("real", "{nope", 1007),
        ("real", '{"event":"media","streamSid":"' + SID + '","media":{"payload":"@@"}}', 1007),
        ("real", '{"event":"dance","streamSid":"' + SID + '"}', 1002),
        ("real", '{"event":"dtmf","streamSid":"MZother","dtmf":{"digit":"1"}}', 1002),
        (None, None, 1008),  # no ticket
        ("not-a-ticket", None, 1008),
    ],
)
async def test_bad_input_closes_with_a_reason(
    server, ticket: str | None, frame: str | None, close: int
) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        call = await _call(server, s, agent["id"], ticket)
        if frame is not None:
            await call.send({"event": "mark", "streamSid": SID, "mark": {"name": "x"}})
            await call.ws.send_str(frame)
        assert await call.closed() == close
        assert call.of("media") == []


async def test_media_before_start_and_a_ticket_for_another_agent_are_refused(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        other = await _agent(server, s)
        url, _ = await _twiml(server, s, agent["id"])
        call = TwilioCall(await s.ws_connect(url))
        await call.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await call.speak(b"\xff" * FRAME)
        assert await call.closed() == 1002

        _, other_ticket = await _twiml(server, s, other["id"])
        call = TwilioCall(await s.ws_connect(url))
        await call.start(other_ticket)
        assert await call.closed() == 1008
        assert call.ws.close_code == 1008

        call = TwilioCall(await s.ws_connect(url))
        await call.ws.send_bytes(b"\x00" * 10)  # Twilio never sends binary frames
        assert await call.closed() == 1002
