"""Time to first audio over the TTS WebSocket, at 1, 8, 32 and 64 concurrent streams.

For each stream: time from sending the text to the first audio byte (TTFA); every 20 ms frame's
arrival against its playback deadline (first byte + k × 20 ms: a later frame means the listener
would hear a gap); and the real-time factor (stream wall time ÷ audio duration). The floor is the
engine's own time for the first clause, measured in this process in the same run; the ideal at N
streams is N × floor ÷ cores. Figures print as a table and land in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import aiohttp
import numpy as np

from harness import percentiles, running_server, write_result
from voicestream.config import load_settings
from voicestream.engines.catalog import build_default_registry

FIRST_CLAUSE = "Thanks for calling, "
TEXT = FIRST_CLAUSE + "how can I help you today? Our office is open from nine to five on weekdays."
FRAME_BYTES = 640  # 20 ms of 16 kHz s16le
FRAME_S = 0.020


def engine_floor(samples: int = 30) -> float:
    """Median time the engine itself needs for the first clause (no server involved)."""
    reg = build_default_registry(load_settings({}))
    engine, voice = reg.voice("slt")
    engine.synthesize(FIRST_CLAUSE, voice)  # warm
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        engine.synthesize(FIRST_CLAUSE, voice)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def one_stream(session: aiohttp.ClientSession, ws_url: str, key: str) -> dict[str, Any]:
    async with session.ws_connect(
        f"{ws_url}/v1/tts/stream",
        params={"voice": "slt", "format": "pcm_16000"},
        headers={"Authorization": f"Bearer {key}"},
    ) as ws:
        t0 = time.perf_counter()
        await ws.send_json({"type": "text", "text": TEXT})
        await ws.send_json({"type": "end"})
        first: float | None = None
        audible: float | None = None  # playback time of the first sample above -40 dBFS
        received = 0
        late = 0
        frames = 0
        worst_margin = float("inf")
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            now = time.perf_counter()
            if first is None:
                first = now
            if audible is None:
                loud = np.flatnonzero(np.abs(np.frombuffer(msg.data, np.int16)) > 330)
                if loud.size:
                    audible = first + (received // 2 + int(loud[0])) / 16000
            # Every whole frame completed by this message arrived now.
            received += len(msg.data)
            while (frames + 1) * FRAME_BYTES <= received:
                deadline = first + frames * FRAME_S
                worst_margin = min(worst_margin, deadline - now)
                if now > deadline:
                    late += 1
                frames += 1
        end = time.perf_counter()
    assert first is not None, "no audio"
    audio_s = received / 2 / 16000
    return {
        "ttfa": first - t0,
        "first_sound": (audible if audible is not None else end) - t0,
        "late_frames": late,
        "frames": frames,
        "rtf": (end - t0) / audio_s,
        "worst_margin": worst_margin,
    }


async def level(ws_url: str, key: str, streams: int, rounds: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        await one_stream(session, ws_url, key)  # warm the path
        for _ in range(rounds):
            out += await asyncio.gather(*(one_stream(session, ws_url, key) for _ in range(streams)))
            await asyncio.sleep(0.2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--levels", default="1,8,32,64")
    ap.add_argument("--samples", type=int, default=40, help="requests per level, at least")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    cores = os.cpu_count() or 1

    rows = []
    with running_server() as srv:
        floor_before = engine_floor()
        results = {}
        for n in levels:
            rounds = max(1, -(-args.samples // n))
            results[n] = asyncio.run(level(srv.ws_url, srv.api_key, n, rounds))
        floor_after = engine_floor()
    floor = (floor_before + floor_after) / 2

    for n in levels:
        res = results[n]
        ttfa = percentiles([r["ttfa"] for r in res])
        sound = percentiles([r["first_sound"] for r in res])
        ideal = max(floor, n * floor / cores)
        late = sum(r["late_frames"] for r in res)
        frames = sum(r["frames"] for r in res)
        rows.append(
            {
                "streams": n,
                "requests": len(res),
                "ttfa_s": ttfa,
                "first_sound_s": sound,
                "engine_first_clause_s": floor,
                "ideal_ttfa_s": ideal,
                "p50_over_floor": ttfa["p50"] / floor,
                "p99_over_ideal": ttfa["p99"] / ideal,
                "server_overhead_p50_s": ttfa["p50"] - floor,
                "rtf_p50": statistics.median(r["rtf"] for r in res),
                "late_frames": late,
                "frames": frames,
                "streams_with_late_frames": sum(1 for r in res if r["late_frames"]),
            }
        )

    print(
        f"\nengine floor (flite slt, {FIRST_CLAUSE.strip()!r}): {floor * 1000:.1f} ms "
        f"(before {floor_before * 1000:.1f}, after {floor_after * 1000:.1f}); cores {cores}"
    )
    header = (
        f"{'streams':>7} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'ideal':>7} "
        f"{'p50/floor':>9} {'p99/ideal':>9} {'ovh p50':>8} {'sound50':>8} {'rtf':>6} {'late':>9}"
    )
    print(header)
    for r in rows:
        t = r["ttfa_s"]
        print(
            f"{r['streams']:>7} {r['requests']:>4} {t['p50'] * 1e3:>8.1f} {t['p95'] * 1e3:>8.1f} "
            f"{t['p99'] * 1e3:>8.1f} {r['ideal_ttfa_s'] * 1e3:>7.1f} {r['p50_over_floor']:>9.2f} "
            f"{r['p99_over_ideal']:>9.2f} {r['server_overhead_p50_s'] * 1e3:>8.1f} "
            f"{r['first_sound_s']['p50'] * 1e3:>8.1f} "
            f"{r['rtf_p50']:>6.3f} {r['late_frames']:>4}/{r['frames']:<5}"
        )
    path = write_result("tts_ttfb", {"text": TEXT, "first_clause": FIRST_CLAUSE, "levels": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
