"""Phone calls replayed over a real Twilio Media Streams socket to the real server: TwiML with a
ticket, μ-law speech and DTMF in, paced μ-law agent speech, marks and ``clear`` out.

Narrowband (8 kHz) speech is beyond the bundled wideband STT model, so the agent's words are
checked through typed paths (DTMF, the stored transcript) and its audio by duration and energy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
import numpy as np
import pytest

from server.waiting import SocketRecorder
from voicestream.media.g711 import ulaw_to_pcm16

GREETING = "Hello, thanks for calling. How can I help you?"
OPENING_HOURS = "Our office is open from nine in the morning to five in the evening on weekdays."
LONG_GREETING = (
    "Welcome to the museum. The tour takes about two hours. It starts in the main hall, "
    "continues through the painting gallery and the sculpture garden, and ends at the gift shop "
    "near the entrance. Guides speak English and German, and groups are limited to twenty people."
)
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

    async def audio_quiet_for(self, seconds: float, within: float = 30.0) -> bytes:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            media = [
                t for t, m in zip(self.times, self.messages, strict=True) if m["event"] == "media"
            ]
            if media and time.monotonic() - media[-1] >= seconds:
                return bytes(self.audio)
            await asyncio.sleep(0.05)
        raise AssertionError("agent audio never went quiet")


async def _agent(server, s: aiohttp.ClientSession, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "phone desk",
        "instructions": "Answer caller questions.",
        "voice": "slt",
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


async def _tts_ulaw(server, s: aiohttp.ClientSession, text: str) -> bytes:
    async with s.post(
        f"{server.url}/v1/tts",
        json={"text": text, "format": "ulaw_8000", "voice": "rms"},
        headers=server.headers(),
    ) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def _stt_ulaw(server, s: aiohttp.ClientSession, ulaw: bytes) -> str:
    async with s.post(
        f"{server.url}/v1/stt", data=ulaw, params={"format": "ulaw_8000"}, headers=server.headers()
    ) as r:
        assert r.status == 200, await r.text()
        text: str = (await r.json())["text"]
        return text


async def _turns(server, s: aiohttp.ClientSession, agent_id: str) -> tuple[str, list[Any]]:
    async with s.get(
        f"{server.url}/v1/convai/sessions", params={"agent_id": agent_id}, headers=server.headers()
    ) as r:
        assert r.status == 200, await r.text()
        (session,) = (await r.json())["sessions"]
    async with s.get(
        f"{server.url}/v1/convai/sessions/{session['id']}", headers=server.headers()
    ) as r:
        stored = await r.json()
    return stored["status"], [(t["role"], t["text"]) for t in stored["turns"]]


def _rms(ulaw: bytes) -> float:
    pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(pcm**2))) if len(pcm) else 0.0


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
        call = await _call(server, s, agent["id"], "real")
        started = time.monotonic()
        mark = await call.wait_for(lambda: call.of("mark"))
        elapsed = time.monotonic() - started
        greeting = bytes(call.audio)
        seconds = len(greeting) / 8000
        assert 1.5 < seconds < 6, seconds  # flite speaks this in about three seconds
        assert _rms(greeting) > 300  # speech, not silence
        # Paced at playback speed: the whole greeting cannot arrive much faster than it plays.
        assert elapsed > seconds - 0.5, (elapsed, seconds)
        # Everything before the mark is the greeting; the mark comes after the last frame.
        assert call.messages.index(mark[0]) == len(call.messages) - 1
        # Our own STT hears this 8 kHz audio poorly (a wideband model), so no words asserted;
        # transcribing must still work on what went down the line.
        assert isinstance(await _stt_ulaw(server, s, greeting), str)

        # Twilio echoes the mark once played: the server takes it silently.
        await call.send({"event": "mark", "streamSid": SID, "mark": mark[0]["mark"]})
        before = len(call.audio)
        await call.send({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "1"}})
        await call.wait_for(lambda: len(call.of("mark")) >= 2)
        assert len(call.audio) - before > 8000 * 0.5  # the agent answered out loud
        await call.send({"event": "stop", "streamSid": SID, "stop": {"callSid": "CA"}})
        assert await call.closed() == 1000
        await asyncio.sleep(0.3)
        status, turns = await _turns(server, s, agent["id"])
    assert status == "ended"
    assert turns[0] == ("agent", GREETING)
    assert turns[1] == ("user", "I pressed 1")
    assert turns[2][0] == "agent" and turns[2][1]


async def test_mulaw_speech_reaches_the_session(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s)
        question = await _tts_ulaw(server, s, "What time is the office open?")
        call = await _call(server, s, agent["id"], "real")
        silence = b"\xff" * 8000
        await call.speak(silence[:4000] + question + silence + silence)
        # The caller's speech became a user turn (narrowband STT: any words) and got an answer.
        await call.wait_for(lambda: call.of("mark"), within=30)
        assert len(call.audio) > 8000 * 0.5
        await call.send({"event": "stop", "streamSid": SID})
        await call.closed()
        await asyncio.sleep(0.3)
        _, turns = await _turns(server, s, agent["id"])
    role, heard = turns[0]
    # Which words come back is not testable here: 8 kHz speech on the wideband model has an
    # 86 % word error rate (benchmarks/telephony.py), so runs heard "what time is beyond us
    # open" and "want to and hm" for the same question. What must hold: the caller's audio
    # became a user turn with words in it, and the agent answered it.
    assert role == "user" and len(heard.split()) >= 2, heard
    assert turns[1][0] == "agent"


async def test_speaking_over_the_agent_sends_clear(server) -> None:
    async with aiohttp.ClientSession() as s:
        agent = await _agent(server, s, first_message=LONG_GREETING)
        interruption = await _tts_ulaw(server, s, "Wait, when is the office open?")
        call = await _call(server, s, agent["id"], "real")
        await call.wait_for(lambda: len(call.audio) > 8000 * 1.5)
        await call.speak(interruption, realtime=True)
        clear = await call.wait_for(lambda: call.of("clear"))
        assert clear[0] == {"event": "clear", "streamSid": SID}
        stopped_at = call.times[call.messages.index(clear[0])]
        await call.speak(b"\xff" * 8000, realtime=True)
        # Only what was already on the wire may follow the clear (lead 100 ms and a frame).
        leftover = [
            t
            for t, m in zip(call.times, call.messages, strict=True)
            if m["event"] == "media" and stopped_at < t < stopped_at + 0.8
        ]
        assert len(leftover) <= 8, len(leftover)
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
