"""The STT socket: partials while audio arrives, a final per utterance, then done."""

from __future__ import annotations

import io
import json
import wave

import aiohttp
import pytest

from helpers import corpus_wer


async def _speech(s: aiohttp.ClientSession, server, text: str) -> bytes:
    async with s.post(
        f"{server.url}/v1/tts",
        json={"text": text, "format": "pcm_16000"},
        headers=server.headers(),
    ) as r:
        assert r.status == 200
        return await r.read()


async def test_stt_stream_partials_and_finals_per_utterance(server) -> None:
    first = "Please call me back tomorrow morning."
    second = "The children are playing in the park."
    silence = b"\x00\x00" * 16000  # 1 s
    async with aiohttp.ClientSession() as s:
        audio = silence[:8000] + await _speech(s, server, first) + silence
        audio += await _speech(s, server, second) + silence
        events = []
        async with s.ws_connect(
            f"{server.ws_url}/v1/stt/stream",
            params={"format": "pcm_16000"},
            headers=server.headers(),
        ) as ws:
            for i in range(0, len(audio), 640):  # 20 ms messages, like a microphone
                await ws.send_bytes(audio[i : i + 640])
            await ws.send_json({"type": "end"})
            async for msg in ws:
                assert msg.type == aiohttp.WSMsgType.TEXT
                events.append(json.loads(msg.data))
            assert ws.close_code == 1000

    kinds = [e["type"] for e in events]
    assert kinds[-1] == "done"
    finals = [e for e in events if e["type"] == "final"]
    assert len(finals) == 2, events
    assert corpus_wer([first, second], [f["text"] for f in finals]) <= 0.2, finals
    # Partials arrived before the first final, while its audio was still coming in.
    assert "partial" in kinds[: kinds.index("final")]
    # Word times are in stream time, increasing, and inside the utterance's span.
    words = [w for f in finals for w in f["words"]]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert finals[0]["start"] < finals[0]["end"] <= finals[1]["start"] < finals[1]["end"]
    assert words[-1]["end"] <= len(audio) / 2 / 16000
    assert events[-1]["text"].split() == " ".join(f["text"] for f in finals).split()


async def test_stt_stream_accepts_other_raw_rates(server) -> None:
    text = "The weather is nice today."
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{server.url}/v1/tts",
            json={"text": text, "format": "pcm_48000"},
            headers=server.headers(),
        ) as r:
            audio = await r.read()
        audio += b"\x00\x00" * 48000
        async with s.ws_connect(
            f"{server.ws_url}/v1/stt/stream",
            params={"format": "pcm_48000"},
            headers=server.headers(),
        ) as ws:
            for i in range(0, len(audio), 1920):
                await ws.send_bytes(audio[i : i + 1920])
            await ws.send_json({"type": "end"})
            events = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
    finals = [e["text"] for e in events if e["type"] == "final"]
    assert corpus_wer([text], [" ".join(finals)]) <= 0.2, events


async def test_silence_gives_no_transcript(server) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{server.ws_url}/v1/stt/stream", headers=server.headers()) as ws:
            for _ in range(100):
                await ws.send_bytes(b"\x00\x00" * 320)
            await ws.send_json({"type": "end"})
            events = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
    assert [e["type"] for e in events] == ["done"]
    assert events[0]["text"] == ""


async def test_stt_http_response_formats(server) -> None:
    text = "Thank you for your help with the project."
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{server.url}/v1/tts",
            json={"text": text, "format": "wav_16000"},
            headers=server.headers(),
        ) as r:
            wav = await r.read()
        out = {}
        for rf in ("json", "text", "srt", "vtt"):
            async with s.post(
                f"{server.url}/v1/stt",
                data=wav,
                params={"response_format": rf},
                headers=server.headers(),
            ) as r:
                assert r.status == 200
                out[rf] = await r.text()
        form = aiohttp.FormData()
        form.add_field("file", wav, filename="speech.wav", content_type="audio/wav")
        async with s.post(f"{server.url}/v1/stt", data=form, headers=server.headers()) as r:
            assert r.status == 200
            multipart_text = (await r.json())["text"]
    body = json.loads(out["json"])
    # The duration is the audio's, silences and all (not the speech's span), as OpenAI's.
    with wave.open(io.BytesIO(wav)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert 1.0 < seconds < 5.0
    assert body["language"] == "en" and body["duration"] == pytest.approx(seconds, abs=0.002)
    assert body["words"][-1]["end"] <= body["duration"]
    assert corpus_wer([text], [body["text"]]) <= 0.2
    assert out["text"].strip() == body["text"]
    assert multipart_text == body["text"]
    assert out["srt"].startswith("1\n00:00:0") and " --> " in out["srt"]
    assert out["vtt"].startswith("WEBVTT") and body["words"][0]["text"] in out["vtt"]
