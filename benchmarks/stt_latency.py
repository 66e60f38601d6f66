"""End of speech → final transcript over the STT WebSocket, with audio sent in real time.

Each stream plays sentences (flite speech, synthesized in this process) as 20 ms frames paced
at real time, with a second of silence after each. Latency is the wall time from sending the
last frame that contains speech to receiving that utterance's final. It includes the VAD's
silence window (VOICESTREAM_VAD_MIN_SILENCE_MS) by design; the table shows it both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp

from harness import percentiles, running_server, write_result
from voicestream.config import load_settings
from voicestream.engines.catalog import build_default_registry

SENTENCES = [
    "Please call me back tomorrow morning.",
    "The meeting has been moved to next week.",
    "Can you tell me where the train station is?",
    "We are going to the beach this weekend.",
]
FRAME = 640  # 20 ms at 16 kHz s16le
SILENCE = b"\x00\x00" * 16000


def speech() -> list[bytes]:
    reg = build_default_registry(load_settings({}))
    engine, voice = reg.voice("slt")
    return [engine.synthesize(s, voice).pcm for s in SENTENCES]


def trim_trailing_silence(pcm: bytes, threshold: int = 300) -> bytes:
    import numpy as np

    x = np.frombuffer(pcm, dtype=np.int16)
    loud = np.nonzero(np.abs(x) > threshold)[0]
    return pcm[: (int(loud[-1]) + 1) * 2] if loud.size else pcm


async def one_stream(
    session: aiohttp.ClientSession, ws_url: str, key: str, clips: list[bytes]
) -> list[dict[str, Any]]:
    speech_end: list[float] = []
    finals: list[tuple[float, str]] = []
    async with session.ws_connect(
        f"{ws_url}/v1/stt/stream", headers={"Authorization": f"Bearer {key}"}
    ) as ws:

        async def receive() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    ev = json.loads(msg.data)
                    if ev["type"] == "final":
                        finals.append((time.perf_counter(), ev["text"]))

        reader = asyncio.create_task(receive())
        start = time.perf_counter()
        sent = 0.0
        for clip in clips:
            clip = trim_trailing_silence(clip)
            for part, is_speech in ((clip, True), (SILENCE, False)):
                for i in range(0, len(part), FRAME):
                    await ws.send_bytes(part[i : i + FRAME])
                    sent += FRAME / 2 / 16000
                    # Real time: never run ahead of the audio clock.
                    delay = start + sent - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if is_speech:
                    speech_end.append(time.perf_counter())
        await ws.send_json({"type": "end"})
        await reader
    out = []
    for end, (at, text) in zip(speech_end, finals, strict=False):
        out.append({"latency": at - end, "text": text})
    return out


async def level(ws_url: str, key: str, streams: int, clips: list[bytes]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        results = await asyncio.gather(
            *(one_stream(session, ws_url, key, clips) for _ in range(streams))
        )
    return [r for rs in results for r in rs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--levels", default="1,8,16")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    clips = speech()
    vad_window = load_settings().vad_min_silence_ms / 1000
    rows = []
    with running_server() as srv:
        for n in levels:
            res = asyncio.run(level(srv.ws_url, srv.api_key, n, clips))
            lat = percentiles([r["latency"] for r in res])
            rows.append(
                {
                    "streams": n,
                    "utterances": len(res),
                    "expected_utterances": n * len(clips),
                    "end_of_speech_to_final_s": lat,
                    "minus_vad_window_p50_s": lat["p50"] - vad_window,
                    "sample_transcripts": [r["text"] for r in res[: len(clips)]],
                }
            )
    print(f"\nVAD silence window: {vad_window * 1000:.0f} ms")
    print(f"{'streams':>7} {'finals':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'p50-VAD':>8}")
    for r in rows:
        t = r["end_of_speech_to_final_s"]
        print(
            f"{r['streams']:>7} {r['utterances']:>4}/{r['expected_utterances']:<4} "
            f"{t['p50'] * 1e3:>8.0f} {t['p95'] * 1e3:>8.0f} {t['p99'] * 1e3:>8.0f} "
            f"{r['minus_vad_window_p50_s'] * 1e3:>8.0f}"
        )
    path = write_result(
        "stt_latency", {"sentences": SENTENCES, "vad_window_s": vad_window, "levels": rows}
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
