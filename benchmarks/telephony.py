"""Telephony: what the phone line costs in recognition, and voice-to-voice over Twilio.

1. Word error rate of the server's STT (its default, Whisper ``tiny.en``, unless
   ``VOICESTREAM_STT_ENGINE`` says otherwise) over ``tests/data/sentences.txt``, spoken by the
   natural voice (Piper ``en_US-joe-medium``) and by flite ``slt``: once as 16 kHz PCM, once as
   a phone line carries it (resampled to 8 kHz, μ-law), in the same run against the same
   server. The gap is the price of narrowband audio on that STT (about nothing for Whisper;
   the issue-8 acceptance figures on their own sentences are ``stt_quality.py``'s).
2. Voice-to-voice latency over the Twilio Media Streams socket at one call: a spoken question
   (the natural voice, μ-law 8 kHz, sent in real time as 20 ms ``media`` frames, then real-time
   silence), timed from the last frame containing speech to the first agent ``media`` frame;
   it includes the VAD's silence window by design. Also DTMF → first agent audio, the typed path
   a phone menu uses, which has no VAD window and no STT in it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp

from harness import ROOT, percentiles, running_server, write_result
from speakers import NATURAL, ROBOTIC, speak
from voicestream.config import load_settings
from voicestream.media.g711 import pcm16_to_ulaw
from voicestream.media.resample import resample

sys.path.insert(0, str(ROOT / "tests"))  # the test suite's corpus and WER
from helpers import corpus_wer, sentences

KNOWLEDGE = [
    "Our office is open from nine in the morning to five in the evening on weekdays.",
    "Parking is free in the garage behind the building for all visitors.",
]
QUESTIONS = ["What time is the office open?", "Where can I park my car?"]
SID = "MZ" + "0" * 32
FRAME = 160  # 20 ms of 8 kHz μ-law
SILENCE = b"\xff" * 16000  # 2 s of μ-law silence


def phone_line(pcm16k: bytes) -> bytes:
    return pcm16_to_ulaw(resample(pcm16k, 16000, 8000))


async def transcribe(s: aiohttp.ClientSession, url: str, key: str, audio: bytes, fmt: str) -> str:
    async with s.post(
        f"{url}/v1/stt",
        data=audio,
        params={"format": fmt},
        headers={"Authorization": f"Bearer {key}"},
    ) as r:
        r.raise_for_status()
        text: str = (await r.json())["text"]
        return text


async def wer_run(url: str, key: str, clips: dict[str, list[bytes]]) -> dict[str, Any]:
    refs = sentences()
    out: dict[str, Any] = {"sentences": len(refs)}
    async with aiohttp.ClientSession() as s:
        for voice, pcms in clips.items():
            wide, narrow = [], []
            for pcm in pcms:
                wide.append(await transcribe(s, url, key, pcm, "pcm_16000"))
                narrow.append(await transcribe(s, url, key, phone_line(pcm), "ulaw_8000"))
            out[voice] = {
                "wer_16k": corpus_wer(refs, wide),
                "wer_8k_ulaw": corpus_wer(refs, narrow),
                "examples": [
                    {"reference": r, "16k": w, "8k_ulaw": n}
                    for r, w, n in list(zip(refs, wide, narrow, strict=True))[:3]
                ],
            }
    return out


class Call:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.media_times: list[float] = []
        self.arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if json.loads(msg.data)["event"] == "media":
                self.media_times.append(time.perf_counter())
                self.arrived.set()

    async def first_audio_after(self, t: float, within: float = 30.0) -> float:
        deadline = time.perf_counter() + within
        while not any(x > t for x in self.media_times):
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), max(0.01, deadline - time.perf_counter()))
        return min(x for x in self.media_times if x > t) - t

    async def quiet(self, seconds: float) -> None:
        """Wait until the agent has sent no audio for ``seconds``."""
        while True:
            left = seconds
            if self.media_times:
                left = self.media_times[-1] + seconds - time.perf_counter()
                if left <= 0:
                    return
            await asyncio.sleep(max(left, 0.05))

    async def send(self, body: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(body))

    async def speak(self, ulaw: bytes) -> float:
        start = time.perf_counter()
        for n, i in enumerate(range(0, len(ulaw), FRAME), start=1):
            payload = base64.b64encode(ulaw[i : i + FRAME]).decode()
            await self.send({"event": "media", "streamSid": SID, "media": {"payload": payload}})
            delay = start + n * 0.02 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        return time.perf_counter()


async def latency_run(url: str, key: str, questions: list[bytes], rounds: int) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    voice_s, dtmf_s = [], []
    async with aiohttp.ClientSession() as s:
        body = {"name": "bench-phone", "knowledge": KNOWLEDGE}
        async with s.post(f"{url}/v1/agents", json=body, headers=auth) as r:
            r.raise_for_status()
            agent_id = (await r.json())["id"]
        async with s.post(
            f"{url}/v1/telephony/twilio/voice", data={"agent_id": agent_id}, headers=auth
        ) as r:
            r.raise_for_status()
            stream = ET.fromstring(await r.text()).find("./Connect/Stream")
        assert stream is not None
        param = stream.find("./Parameter[@name='ticket']")
        assert param is not None
        async with s.ws_connect(stream.attrib["url"]) as ws:
            call = Call(ws)
            await call.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            start = {"streamSid": SID, "callSid": "CA" + "0" * 32, "tracks": ["inbound"]}
            start["customParameters"] = {"ticket": param.attrib["value"]}
            await call.send({"event": "start", "streamSid": SID, "start": start})
            for i in range(rounds):
                end = await call.speak(questions[i % len(questions)])
                silence = asyncio.create_task(call.speak(SILENCE))
                try:
                    voice_s.append(await call.first_audio_after(end))
                except TimeoutError:
                    print("  no answer (the question was not recognised)")
                await silence
                await call.quiet(0.6)
                sent = time.perf_counter()
                await call.send({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "1"}})
                dtmf_s.append(await call.first_audio_after(sent))
                await call.quiet(0.6)
            await call.send({"event": "stop", "streamSid": SID, "stop": {}})
            await asyncio.wait_for(call.reader, 10)
    return {"voice_to_voice_s": percentiles(voice_s), "dtmf_to_audio_s": percentiles(dtmf_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=6, help="question + DTMF turns in the call")
    args = ap.parse_args()
    clips = {voice: [speak(voice, t) for t in sentences()] for voice in (NATURAL, ROBOTIC)}
    questions = [phone_line(speak(NATURAL, q, trim=True)) for q in QUESTIONS]
    window = load_settings().vad_min_silence_ms / 1000
    with running_server() as srv:
        wer = asyncio.run(wer_run(srv.url, srv.api_key, clips))
        lat = asyncio.run(latency_run(srv.url, srv.api_key, questions, args.rounds))
    v, d = lat["voice_to_voice_s"], lat["dtmf_to_audio_s"]
    print(f"\nWER over {wer['sentences']} sentences (speaker → the server's STT)")
    print(f"{'speaker':>18} {'16 kHz PCM':>11} {'8 kHz μ-law':>12}")
    for voice in clips:
        w = wer[voice]
        print(f"{voice:>18} {w['wer_16k'] * 100:9.1f} % {w['wer_8k_ulaw'] * 100:10.1f} %")
    print(f"\nTwilio socket, 1 call (VAD stop window {window * 1000:.0f} ms)")
    print(f"{'path':>16} {'p50 ms':>7} {'p95 ms':>7} {'n':>3}")
    for name, p in (("voice→voice", v), ("dtmf→audio", d)):
        print(f"{name:>16} {p['p50'] * 1e3:>7.0f} {p['p95'] * 1e3:>7.0f} {p['n']:>3}")
    path = write_result("telephony", {"vad_window_s": window, "wer": wer, "twilio_1_call": lat})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
