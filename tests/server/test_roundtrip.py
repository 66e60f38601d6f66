"""TTS → STT round trips through the running server, checked by what the audio says."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import av
import pytest

from helpers import corpus_wer, sentences
from server.clients import stt_http, tts_ws

MAX_WER = 0.15


async def test_http_round_trip_word_error_rate(server) -> None:
    refs = sentences()
    hyps: list[str] = []
    async with aiohttp.ClientSession() as s:
        for text in refs:
            async with s.post(
                f"{server.url}/v1/tts",
                json={"text": text, "voice": "slt", "format": "mp3_44100_128"},
                headers=server.headers(),
            ) as r:
                assert r.status == 200, await r.text()
                assert r.headers["Content-Type"] == "audio/mpeg"
                audio = await r.read()
            # The bytes are a real MP3 stream: PyAV decodes them, independently of the server.
            with av.open(io.BytesIO(audio)) as container:
                assert container.format.name == "mp3"
            result = await stt_http(s, server.url, server.headers(), audio)
            assert result["duration"] > 0.5
            hyps.append(result["text"])
    wer = corpus_wer(refs, hyps)
    print(f"HTTP round-trip WER over {len(refs)} sentences: {wer:.3f}")
    assert wer <= MAX_WER, list(zip(refs, hyps, strict=True))


async def test_websocket_round_trip_word_error_rate(server) -> None:
    # Half the corpus: the HTTP test covers it all; this one is about word-by-word streaming.
    refs = sentences()[::2]
    hyps: list[str] = []
    async with aiohttp.ClientSession() as s:
        for text in refs:
            # Word by word, as an LLM would stream it.
            words = [w + " " for w in text.split()]
            res = await tts_ws(s, server.ws_url, server.headers(), words)
            assert res.close_code == 1000
            assert res.events[-1]["type"] == "done"
            # 20 ms frames of 16 kHz s16le, except possibly the last.
            assert all(len(f) == 640 for f in res.frames[:-1])
            result = await stt_http(
                s, server.url, server.headers(), res.audio, params={"format": "pcm_16000"}
            )
            hyps.append(result["text"])
    wer = corpus_wer(refs, hyps)
    print(f"WebSocket round-trip WER over {len(refs)} sentences: {wer:.3f}")
    assert wer <= MAX_WER, list(zip(refs, hyps, strict=True))


async def test_alignment_covers_text_and_audio(server) -> None:
    text = "Thanks for calling, how can I help you today?"
    async with aiohttp.ClientSession() as s:
        res = await tts_ws(s, server.ws_url, server.headers(), [text])
    alignments = [e for e in res.events if e["type"] == "alignment"]
    assert len(alignments) == 2, "two clauses, two alignment events"
    assert "".join("".join(a["chars"]) for a in alignments) == text
    starts = [t for a in alignments for t in a["char_start_ms"]]
    assert starts == sorted(starts)
    audio_ms = len(res.audio) / 2 / 16000 * 1000
    last = alignments[-1]
    assert last["char_start_ms"][-1] + last["char_duration_ms"][-1] <= audio_ms + 1
    assert alignments[1]["audio_start"] > 0.3  # the second clause starts after the first's audio
    done = res.events[-1]
    assert done["type"] == "done" and done["characters"] == len(text)


async def test_twenty_simultaneous_streams_each_say_their_own_text(server) -> None:
    refs = sentences()[:20]
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(
            *(tts_ws(s, server.ws_url, server.headers(), [t]) for t in refs)
        )
        hyps = []
        for res in results:
            assert res.close_code == 1000
            r = await stt_http(
                s, server.url, server.headers(), res.audio, params={"format": "pcm_16000"}
            )
            hyps.append(r["text"])
    wer = corpus_wer(refs, hyps)
    print(f"20 concurrent streams, WER: {wer:.3f}")
    assert wer <= MAX_WER, list(zip(refs, hyps, strict=True))
    # Each stream carries its own sentence, not a neighbour's: the transcript is closest to
    # the sentence that stream was sent.
    for i, hyp in enumerate(hyps):
        errors = [corpus_wer([ref], [hyp]) for ref in refs]
        assert min(range(len(refs)), key=errors.__getitem__) == i, (refs[i], hyp)


@pytest.mark.parametrize(
    "fmt", ["wav_16000", "opus_48000_64", "ulaw_8000", "pcm_24000", "flac_16000"]
)
async def test_http_tts_formats_decode_to_speech(server, fmt: str) -> None:
    text = "The children are playing in the park."
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{server.url}/v1/tts", json={"text": text, "format": fmt}, headers=server.headers()
        ) as r:
            assert r.status == 200
            audio = await r.read()
        params = {"format": fmt} if fmt.startswith(("pcm", "ulaw")) else None
        result = await stt_http(s, server.url, server.headers(), audio, params=params)
    assert result["duration"] > 1.0
    if not fmt.startswith("ulaw"):  # narrowband audio is beyond the wideband model
        assert corpus_wer([text], [result["text"]]) <= 0.35, result["text"]
