"""Time to first audio over the TTS WebSocket, per voice, at 1, 8, 32 and 64 concurrent streams.

For each stream: time from sending the text to the first audio byte (TTFA); every 20 ms frame's
arrival against its playback deadline (first byte + k × 20 ms: a later frame is an underrun,
a gap the listener hears); and the real-time factor (stream wall time ÷ audio duration).

The floor is the engine itself on the first clause: the same engine and model the server loads
(``build_default_registry``; for Piper the same ONNX Runtime session options, one intra-op
thread), called directly in this process, ``engine.synthesize(first clause)``, median of
``--floor-samples`` calls, measured before and after the load. It is the engine's work only:
phonemization and the ONNX run for Piper, libflite for flite. The server also resamples (Piper
speaks at 22.05 kHz; the socket carries ``pcm_16000``), frames and sends; that is transport
work, not part of the engine, so it is left out of the floor and shows up as server overhead.

The ideal at N streams is what 'cores' cores could do if the server added nothing:
max(floor, N × floor CPU time ÷ cores), with the floor's CPU time measured with it (for a
single-threaded engine it equals the floor). Targets (issue 8): first audio ≤ 1.2 × floor at 1
stream; p99 at 32 streams reported as a ratio to the ideal; underruns counted.
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
from speakers import NATURAL, ROBOTIC, engine_and_voice

FIRST_CLAUSE = "Thanks for calling, "
TEXT = FIRST_CLAUSE + "how can I help you today? Our office is open from nine to five on weekdays."
FRAME_BYTES = 640  # 20 ms of 16 kHz s16le
FRAME_S = 0.020
TARGET_P50_OVER_FLOOR = 1.2


def engine_floor(voice_id: str, samples: int) -> tuple[float, float]:
    """Median wall and CPU seconds the engine itself needs for the first clause."""
    engine, voice = engine_and_voice(voice_id)
    engine.synthesize(FIRST_CLAUSE, voice)  # warm
    wall, cpu = [], []
    for _ in range(samples):
        c0, t0 = time.process_time(), time.perf_counter()
        engine.synthesize(FIRST_CLAUSE, voice)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


async def one_stream(
    session: aiohttp.ClientSession, ws_url: str, key: str, voice: str
) -> dict[str, Any]:
    async with session.ws_connect(
        f"{ws_url}/v1/tts/stream",
        params={"voice": voice, "format": "pcm_16000"},
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


async def level(
    ws_url: str, key: str, voice: str, streams: int, rounds: int
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        await one_stream(session, ws_url, key, voice)  # warm the path
        for _ in range(rounds):
            out += await asyncio.gather(
                *(one_stream(session, ws_url, key, voice) for _ in range(streams))
            )
            await asyncio.sleep(0.2)
    return out


def row(
    voice: str, n: int, res: list[dict[str, Any]], floor: float, floor_cpu: float, cores: int
) -> dict[str, Any]:
    ttfa = percentiles([r["ttfa"] for r in res])
    ideal = max(floor, n * floor_cpu / cores)
    return {
        "voice": voice,
        "streams": n,
        "requests": len(res),
        "ttfa_s": ttfa,
        "first_sound_s": percentiles([r["first_sound"] for r in res]),
        "engine_first_clause_s": floor,
        "engine_first_clause_cpu_s": floor_cpu,
        "ideal_ttfa_s": ideal,
        "p50_over_floor": ttfa["p50"] / floor,
        "p99_over_ideal": ttfa["p99"] / ideal,
        "server_overhead_p50_s": ttfa["p50"] - floor,
        "rtf_p50": statistics.median(r["rtf"] for r in res),
        "late_frames": sum(r["late_frames"] for r in res),
        "frames": sum(r["frames"] for r in res),
        "streams_with_late_frames": sum(1 for r in res if r["late_frames"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--levels", default="1,8,32,64")
    ap.add_argument("--samples", type=int, default=40, help="requests per level, at least")
    ap.add_argument("--voice", default=f"{NATURAL},{ROBOTIC}", help="comma-separated voice ids")
    ap.add_argument("--floor-samples", type=int, default=30)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="for the ideal")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    voices = args.voice.split(",")
    cores = args.cores

    rows = []
    floors: dict[str, dict[str, float]] = {}
    with running_server() as srv:
        for voice in voices:
            before, before_cpu = engine_floor(voice, args.floor_samples)
            results = {}
            for n in levels:
                rounds = max(1, -(-args.samples // n))
                results[n] = asyncio.run(level(srv.ws_url, srv.api_key, voice, n, rounds))
            after, after_cpu = engine_floor(voice, args.floor_samples)
            floor, floor_cpu = (before + after) / 2, (before_cpu + after_cpu) / 2
            floors[voice] = {"floor_s": floor, "before_s": before, "after_s": after}
            floors[voice]["cpu_s"] = floor_cpu
            rows += [row(voice, n, results[n], floor, floor_cpu, cores) for n in levels]

    print(f"\nfirst clause {FIRST_CLAUSE.strip()!r}; ideal for {cores} cores")
    for voice, f in floors.items():
        print(
            f"engine floor {voice}: {f['floor_s'] * 1e3:.1f} ms (before {f['before_s'] * 1e3:.1f},"
            f" after {f['after_s'] * 1e3:.1f}; CPU {f['cpu_s'] * 1e3:.1f} ms)"
        )
    header = (
        f"{'voice':>17} {'streams':>7} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'ideal':>7} {'p50/floor':>9} {'p99/ideal':>9} {'ovh p50':>8} {'sound50':>8} "
        f"{'rtf':>6} {'late':>11}"
    )
    print(header)
    for r in rows:
        t = r["ttfa_s"]
        print(
            f"{r['voice']:>17} {r['streams']:>7} {r['requests']:>4} {t['p50'] * 1e3:>8.1f} "
            f"{t['p95'] * 1e3:>8.1f} {t['p99'] * 1e3:>8.1f} {r['ideal_ttfa_s'] * 1e3:>7.1f} "
            f"{r['p50_over_floor']:>9.2f} {r['p99_over_ideal']:>9.2f} "
            f"{r['server_overhead_p50_s'] * 1e3:>8.1f} {r['first_sound_s']['p50'] * 1e3:>8.1f} "
            f"{r['rtf_p50']:>6.3f} {r['late_frames']:>5}/{r['frames']:<5}"
        )
    for voice in voices:
        one = [r for r in rows if r["voice"] == voice and r["streams"] == 1]
        if one:
            ratio = one[0]["p50_over_floor"]
            verdict = "meets" if ratio <= TARGET_P50_OVER_FLOOR else "misses"
            print(f"{voice}: first audio at 1 stream = {ratio:.2f} × floor ({verdict} ≤ 1.2)")
    path = write_result(
        "tts_ttfb",
        {
            "text": TEXT,
            "first_clause": FIRST_CLAUSE,
            "cores_for_ideal": cores,
            "target_p50_over_floor_at_1_stream": TARGET_P50_OVER_FLOOR,
            "floors": floors,
            "levels": rows,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
