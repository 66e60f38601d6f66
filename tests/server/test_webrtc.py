"""WebRTC conversations: a real aiortc peer talks to a knowledge agent through the server.

The client speaks a question (synthesized by the server's own TTS, played as a paced audio
track), reads the protocol events off the data channel, records the agent's voice from the
received track and transcribes it back with the server's STT: the test checks what was said,
not just that bytes moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from helpers import normalize
from server.clients import stt_http

PASSAGE = "Our office is open from nine to five on weekdays."
GREETING = "Hello, how can I help?"
QUESTION = "What time is the office open?"
WAIT_S = 45.0


# ---- helpers -------------------------------------------------------------------------------


async def create_agent(
    s: aiohttp.ClientSession, server: Any, *, public: bool = True, first_message: str = GREETING
) -> str:
    body = {
        "name": "front desk",
        "instructions": "Answer from the knowledge base.",
        "voice": "slt",
        "first_message": first_message,
        "knowledge": [PASSAGE],
        "public": public,
    }
    async with s.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r:
        assert r.status in (200, 201), await r.text()
        agent: dict[str, Any] = await r.json()
    return str(agent["id"])


async def tts_pcm(s: aiohttp.ClientSession, server: Any, text: str, rate: int) -> bytes:
    body = {"text": text, "voice": "slt", "format": f"pcm_{rate}"}
    async with s.post(f"{server.url}/v1/tts", json=body, headers=server.headers()) as r:
        assert r.status == 200, await r.text()
        return await r.read()


class SpeechTrack(MediaStreamTrack):
    """A microphone that is silent until ``speak`` is called, then says one utterance.

    Paced at 20 ms like a real capture device; 48 kHz mono, as a browser would send.
    """

    kind = "audio"
    RATE = 48000
    SAMPLES = 960

    def __init__(self) -> None:
        super().__init__()
        self._queue = bytearray()
        self._start: float | None = None
        self._pts = 0
        self.spoke_until: float | None = None  # monotonic time the last speech frame went out

    def speak(self, pcm: bytes) -> None:
        self._queue += pcm
        self.spoke_until = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += self.SAMPLES
            wait = self._start + self._pts / self.RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        n = self.SAMPLES * 2
        chunk = bytes(self._queue[:n])
        del self._queue[:n]
        if chunk and not self._queue:
            self.spoke_until = time.monotonic()
        chunk = chunk.ljust(n, b"\0")
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(chunk, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.RATE)
        return frame


class AudioRecorder:
    """The agent's voice as the client hears it: 16 kHz mono, plus when it was voiced."""

    def __init__(self) -> None:
        self.pcm = bytearray()
        self.voiced_frames = 0
        self.last_voiced: float | None = None
        self.first_voiced_after: Callable[[], float | None] = lambda: None
        self.voiced_times: list[float] = []
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)

    async def run(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for out in self._resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1)
                self.pcm += samples.astype("<i2").tobytes()
                if np.abs(samples.astype(np.int32)).max() > 300:
                    now = time.monotonic()
                    self.voiced_frames += 1
                    self.last_voiced = now
                    self.voiced_times.append(now)

    def mark(self) -> int:
        return len(self.pcm)


class Client:
    """An aiortc peer with a mic track and an ``events`` data channel."""

    def __init__(self, *, data_channel: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = SpeechTrack()
        self.pc.addTrack(self.mic)
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self.recorder = AudioRecorder()
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)
        if data_channel:
            self.channel: RTCDataChannel = self.pc.createDataChannel("events")
            self.channel.on("message", self._on_message)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.create_task(self.recorder.run(track)))

    def _on_message(self, message: str | bytes) -> None:
        self.events.append(json.loads(message))

        async def notify() -> None:
            async with self._arrived:
                self._arrived.notify_all()

        self._tasks.append(asyncio.create_task(notify()))

    async def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], *, after: int = 0, within: float = WAIT_S
    ) -> dict[str, Any]:
        async def scan() -> dict[str, Any]:
            async with self._arrived:
                while True:
                    for ev in self.events[after:]:
                        if pred(ev):
                            return ev
                    await self._arrived.wait()

        try:
            return await asyncio.wait_for(scan(), within)
        except TimeoutError:
            raise AssertionError(f"no matching event within {within} s: {self.events}") from None

    def send(self, obj: dict[str, Any] | str) -> None:
        self.channel.send(obj if isinstance(obj, str) else json.dumps(obj))

    async def close(self) -> None:
        await self.pc.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def split_candidates(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """The offer without its candidates, and those candidates in the PATCH shape."""
    mids = re.findall(r"^a=mid:(\S+)", sdp, re.M)
    lines: list[str] = []
    candidates: list[dict[str, Any]] = []
    index = -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
        if line.startswith("a=candidate:"):
            candidates.append(
                {"candidate": line[2:], "sdp_mid": mids[index], "sdp_mline_index": index}
            )
        elif not line.startswith("a=end-of-candidates"):
            lines.append(line)
    return "\r\n".join(lines) + "\r\n", candidates


async def wait_until(cond: Callable[[], bool], within: float = WAIT_S, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        yield s


async def client_offer(client: Client) -> str:
    await client.pc.setLocalDescription(await client.pc.createOffer())
    assert client.pc.localDescription is not None
    return client.pc.localDescription.sdp


# ---- the conversation ----------------------------------------------------------------------


async def test_voice_conversation_over_webrtc(server, http) -> None:
    from voicestream.transports.webrtc import WEBRTC_PEERS

    agent_id = await create_agent(http, server)
    question = await tts_pcm(http, server, QUESTION, 48000)
    client = Client()
    try:
        # Trickle ICE: the offer goes without candidates, which follow in one PATCH.
        sdp, candidates = split_candidates(await client_offer(client))
        assert candidates
        async with http.post(
            f"{server.url}/v1/convai/webrtc/offer",
            json={"sdp": sdp, "type": "offer", "agent_id": agent_id},
        ) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
        assert answer["type"] == "answer" and answer["pc_id"] and answer["session_id"]
        patch = {"pc_id": answer["pc_id"], "candidates": [*candidates, {"candidate": ""}]}
        async with http.patch(f"{server.url}/v1/convai/webrtc/offer", json=patch) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"status": "success"}
        await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

        session = await client.wait_for(lambda e: e["type"] == "session")
        assert session["session_id"] == answer["session_id"] and session["resumed"] is False
        greeting = await client.wait_for(lambda e: e["type"] == "agent_response")
        assert greeting["text"] == GREETING
        # Let the greeting finish playing, then ask.
        await wait_until(lambda: client.recorder.voiced_frames > 10, what="the greeting's audio")
        await wait_until(
            lambda: time.monotonic() - (client.recorder.last_voiced or 0) > 0.5,
            what="the greeting to end",
        )
        mark_events, mark_audio = len(client.events), client.recorder.mark()
        client.mic.speak(question)

        final = await client.wait_for(
            lambda e: e["type"] == "user_transcript" and e["final"], after=mark_events
        )
        heard = set(normalize(final["text"]).split())
        asked = set(normalize(QUESTION).split())
        assert len(heard & asked) >= len(asked) - 2, final["text"]
        reply = await client.wait_for(lambda e: e["type"] == "agent_response", after=mark_events)
        assert {"office", "nine", "five"} <= set(normalize(reply["text"]).split()), reply

        # The reply is also heard: wait for its audio to start and then stop.
        spoke_until = client.mic.spoke_until
        assert spoke_until is not None
        await wait_until(
            lambda: any(t > spoke_until for t in client.recorder.voiced_times), what="agent audio"
        )
        first_audio = next(t for t in client.recorder.voiced_times if t > spoke_until)
        await wait_until(
            lambda: time.monotonic() - (client.recorder.last_voiced or 0) > 0.6,
            what="the reply to end",
        )
        said = await stt_http(
            http,
            server.url,
            server.headers(),
            bytes(client.recorder.pcm[mark_audio:]),
            params={"format": "pcm_16000"},
        )
        words = set(normalize(said["text"]).split())
        assert {"office", "nine"} & words, said["text"]
        print(
            f"\nWebRTC voice-to-voice (end of user audio sent → first agent audio received): "
            f"{(first_audio - spoke_until) * 1000:.0f} ms; agent said {said['text']!r}"
        )

        # Control on the data channel: a bad message costs an error event, not the connection.
        mark_events = len(client.events)
        client.send("{not json")
        err = await client.wait_for(lambda e: e["type"] == "error", after=mark_events)
        assert err["code"] == "invalid_json"
        client.send({"type": "text", "text": "When is the office open?"})
        typed = await client.wait_for(lambda e: e["type"] == "agent_response", after=mark_events)
        assert "nine" in typed["text"].lower()

        # Hanging up closes the peer on the server and forgets it.
        peers = server.app[WEBRTC_PEERS]
        assert peers.find(answer["pc_id"]) is not None
        client.send({"type": "end"})
        await wait_until(lambda: client.pc.connectionState == "closed", what="the hang-up")
        await wait_until(lambda: answer["pc_id"] not in peers, what="the peer to go")
    finally:
        await client.close()


async def test_candidates_in_offer_then_hang_up_ends_the_conversation(server, http) -> None:
    """A non-trickle client (candidates in the offer) that closes its peer connection: the
    server sees the DTLS close as a hang-up, so the session cannot be resumed."""
    from voicestream.transports.webrtc import WEBRTC_PEERS

    agent_id = await create_agent(http, server)
    first = Client()
    try:
        offer = {"sdp": await client_offer(first), "type": "offer", "agent_id": agent_id}
        async with http.post(f"{server.url}/v1/convai/webrtc/offer", json=offer) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
        await first.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await first.wait_for(lambda e: e["type"] == "session")
        # Renegotiation: a new offer on the same connection, named by its pc_id.
        await first.pc.setLocalDescription(await first.pc.createOffer())
        assert first.pc.localDescription is not None
        again = {"sdp": first.pc.localDescription.sdp, "type": "offer", "pc_id": answer["pc_id"]}
        async with http.post(f"{server.url}/v1/convai/webrtc/offer", json=again) as r:
            assert r.status == 200, await r.text()
            second_answer = await r.json()
        assert (second_answer["pc_id"], second_answer["session_id"]) == (
            answer["pc_id"],
            answer["session_id"],
        )
        await first.pc.setRemoteDescription(RTCSessionDescription(second_answer["sdp"], "answer"))
        first.send({"type": "text", "text": "When is the office open?"})
        await first.wait_for(lambda e: e["type"] == "agent_response" and "nine" in e["text"])
    finally:
        await first.close()
    peers = server.app[WEBRTC_PEERS]
    await wait_until(lambda: answer["pc_id"] not in peers, what="the server to notice")
    second = Client()
    try:
        offer = {
            "sdp": await client_offer(second),
            "type": "offer",
            "agent_id": agent_id,
            "session_id": answer["session_id"],
        }
        async with http.post(f"{server.url}/v1/convai/webrtc/offer", json=offer) as r:
            assert r.status == 404, await r.text()
    finally:
        await second.close()


async def test_audio_only_client_still_hears_the_agent(server, http) -> None:
    """No data channel in the offer (a SIP-style or minimal client): the conversation runs,
    greets, and speaks; events simply have nowhere to go."""
    agent_id = await create_agent(http, server)
    client = Client(data_channel=False)
    try:
        offer = {"sdp": await client_offer(client), "type": "offer", "agent_id": agent_id}
        assert "m=application" not in offer["sdp"]
        async with http.post(f"{server.url}/v1/convai/webrtc/offer", json=offer) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
        await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await wait_until(lambda: client.recorder.voiced_frames > 20, what="the greeting's audio")
    finally:
        await client.close()


# ---- bad input -----------------------------------------------------------------------------


async def _post_offer(http: aiohttp.ClientSession, server: Any, body: Any) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
    async with http.post(f"{server.url}/v1/convai/webrtc/offer", **kwargs) as r:
        assert r.content_type == "application/json"
        return r.status, await r.json()


async def test_malformed_sdp_is_400(server, http) -> None:
    agent_id = await create_agent(http, server)
    for sdp in ["garbage", "v=0\r\n", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"]:
        status, body = await _post_offer(
            http, server, {"sdp": sdp, "type": "offer", "agent_id": agent_id}
        )
        assert status == 400, body
        assert body["error"]["code"] == "invalid_sdp"
    # A real offer with its ICE credentials cut out.
    client = Client()
    try:
        sdp = re.sub(r"a=ice-(ufrag|pwd):\S+\r\n", "", await client_offer(client))
    finally:
        await client.close()
    status, body = await _post_offer(
        http, server, {"sdp": sdp, "type": "offer", "agent_id": agent_id}
    )
    assert status == 400 and body["error"]["code"] == "invalid_sdp", body


async def test_bad_offer_bodies_are_4xx(server, http) -> None:
    client = Client()
    try:
        sdp = await client_offer(client)
    finally:
        await client.close()
    cases: list[tuple[Any, int, str]] = [
        ({"sdp": sdp, "type": "offer"}, 422, "invalid_request"),  # no agent_id
        ({"sdp": sdp, "type": "answer", "agent_id": "x"}, 422, "invalid_request"),
        ({"type": "offer", "agent_id": "x"}, 422, "invalid_request"),
        ("{not json", 400, "invalid_json"),
        ([1, 2], 422, "invalid_request"),
    ]
    for body, status, code in cases:
        got, payload = await _post_offer(http, server, body)
        assert (got, payload["error"]["code"]) == (status, code), (body, payload)
    # An agent that does not exist, or is not public, asked for without a key.
    got, payload = await _post_offer(
        http, server, {"sdp": sdp, "type": "offer", "agent_id": "no-such-agent"}
    )
    assert 400 <= got < 500, payload


async def test_patch_unknown_pc_is_404_and_bad_candidates_are_400(server, http) -> None:
    url = f"{server.url}/v1/convai/webrtc/offer"
    body = {"pc_id": "nope", "candidates": [{"candidate": "", "sdp_mid": "0"}]}
    async with http.patch(url, json=body) as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "not_found"
    async with http.patch(url, json={"candidates": []}) as r:
        assert r.status == 422
    agent_id = await create_agent(http, server)
    client = Client()
    try:
        offer = {"sdp": await client_offer(client), "type": "offer", "agent_id": agent_id}
        async with http.post(url, json=offer) as r:
            answer = await r.json()
        for candidate in [
            {"candidate": "candidate:1 1 udp", "sdp_mid": "0"},
            {"candidate": "candidate:1 1 udp x 1.2.3.4 9 typ host", "sdp_mid": "0"},
            {"candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host"},  # no mid nor index
            {"candidate": "candidate:1 1 udp 1 not-an-ip 9 typ host", "sdp_mid": "0"},
            {"candidate": "candidate:1 1 udp 1 1.2.3.4 99999 typ host", "sdp_mid": "0"},
            {"candidate": "candidate:1 7 udp 1 1.2.3.4 9 typ host", "sdp_mid": "0"},
            {"candidate": "candidate:1 1 sctp 1 1.2.3.4 9 typ host", "sdp_mid": "0"},
        ]:
            patch = {"pc_id": answer["pc_id"], "candidates": [candidate]}
            async with http.patch(url, json=patch) as r:
                assert r.status == 400, candidate
                assert (await r.json())["error"]["code"] == "invalid_candidate"
        await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await client.wait_for(lambda e: e["type"] == "session")
    finally:
        await client.close()


async def test_signalling_allows_cross_origin_widgets(server, http) -> None:
    """The widget signals from the embedding site's origin: a CORS preflight, then the POST."""
    url = f"{server.url}/v1/convai/webrtc/offer"
    headers = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "content-type",
    }
    async with http.options(url, headers=headers) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "PATCH" in r.headers["Access-Control-Allow-Methods"]
        assert "content-type" in r.headers["Access-Control-Allow-Headers"].lower()
    agent_id = await create_agent(http, server)
    client = Client()
    try:
        offer = {"sdp": await client_offer(client), "type": "offer", "agent_id": agent_id}
        async with http.post(url, json=offer, headers={"Origin": "https://shop.example"}) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            answer = await r.json()
        await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await client.wait_for(lambda e: e["type"] == "session")
    finally:
        await client.close()
