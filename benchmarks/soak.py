"""Soak: minutes of mixed sessions against one server; errors, latencies and the server's memory.

A fixed number of workers (``--concurrency``) each run one session at a time, in turn: TTS over
HTTP and over the WebSocket, STT over HTTP and over the WebSocket, and a conversation with a
knowledge-base agent. Every session has a timeout, so the load stays bounded however the server
behaves. Latency per kind is what a user of that kind waits for:

- ``tts_http``: the whole response; ``tts_ws``: the first audio frame;
- ``stt_http``: the whole transcript; ``stt_ws``: from ``end`` to ``done``;
- ``convai``: from the end of the user's speech to the first agent audio (voice to voice).

The server's RSS (``/proc/<pid>/status``) is sampled throughout: before load (baseline), during
it (peak), and through a cool-down long enough for idle STT decoders to be freed
(``VOICESTREAM_STT_IDLE_RELEASE_SECONDS`` is set short for the run). Memory "came back" when the
cool-down ends within a quarter of the way from the baseline to the peak (or within 64 MiB of
the baseline). Figures print and land in benchmarks/results/soak-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from harness import Server, percentiles, running_server, write_result

TEXT = "Thanks for calling. Our office is open from nine to five on weekdays."
QUESTION = "What time is the office open?"
KNOWLEDGE = [
    "Our office is open from nine in the morning to five in the evening on weekdays.",
    "Parking is free in the garage behind the building for all visitors.",
]
FRAME = 640  # 20 ms of 16 kHz s16le
KINDS = ("tts_http", "tts_ws", "stt_http", "stt_ws", "convai")
SESSION_TIMEOUT_S = 60.0
IDLE_RELEASE_S = 5.0
MIB = 1024 * 1024


@dataclass
class Fixture:
    """What every session needs: the server, a key header, speech to send, an agent."""

    server: Server
    headers: dict[str, str]
    speech: bytes = b""
    agent_id: str = ""


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def tts_http(s: aiohttp.ClientSession, fx: Fixture) -> float:
    t0 = time.perf_counter()
    async with s.post(
        f"{fx.server.url}/v1/tts", json={"text": TEXT, "format": "mp3_22050_32"}, headers=fx.headers
    ) as r:
        r.raise_for_status()
        await r.read()
    return time.perf_counter() - t0


async def tts_ws(s: aiohttp.ClientSession, fx: Fixture) -> float:
    first: float | None = None
    async with s.ws_connect(
        f"{fx.server.ws_url}/v1/tts/stream", params={"format": "pcm_16000"}, headers=fx.headers
    ) as ws:
        t0 = time.perf_counter()
        await ws.send_json({"type": "text", "text": TEXT})
        await ws.send_json({"type": "end"})
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY and first is None:
                first = time.perf_counter() - t0
            elif msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "error":
                raise RuntimeError(f"error event: {msg.data}")
    if first is None or ws.close_code != 1000:
        raise RuntimeError(f"no audio, or closed with {ws.close_code}")
    return first


async def stt_http(s: aiohttp.ClientSession, fx: Fixture) -> float:
    t0 = time.perf_counter()
    async with s.post(
        f"{fx.server.url}/v1/stt",
        params={"format": "pcm_16000"},
        data=fx.speech,
        headers=fx.headers,
    ) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {(await r.text())[:120]}")
        if "office" not in (await r.json())["text"]:
            raise RuntimeError("transcript misses the question")
    return time.perf_counter() - t0


async def stt_ws(s: aiohttp.ClientSession, fx: Fixture) -> float:
    async with s.ws_connect(
        f"{fx.server.ws_url}/v1/stt/stream", params={"format": "pcm_16000"}, headers=fx.headers
    ) as ws:
        for i in range(0, len(fx.speech), FRAME * 50):  # a second per message
            await ws.send_bytes(fx.speech[i : i + FRAME * 50])
        t0 = time.perf_counter()
        await ws.send_json({"type": "end"})
        done: float | None = None
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            if event["type"] == "error":
                raise RuntimeError(f"error event: {event['code']}")
            if event["type"] == "done":
                done = time.perf_counter() - t0
    if done is None:
        raise RuntimeError(f"no done event; closed with {ws.close_code}")
    return done


async def _send_realtime(ws: aiohttp.ClientWebSocketResponse, pcm: bytes) -> float:
    start = time.perf_counter()
    for n, i in enumerate(range(0, len(pcm), FRAME), start=1):
        await ws.send_bytes(pcm[i : i + FRAME])
        delay = start + n * 0.02 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    return time.perf_counter()


async def convai(s: aiohttp.ClientSession, fx: Fixture) -> float:
    answered = asyncio.Event()
    audio_after: list[float] = []
    spoke_until = float("inf")
    async with s.ws_connect(
        f"{fx.server.ws_url}/v1/convai/stream",
        params={"agent_id": fx.agent_id},
        headers=fx.headers,
    ) as ws:

        async def read() -> None:
            async for msg in ws:
                now = time.perf_counter()
                if msg.type == aiohttp.WSMsgType.BINARY and now > spoke_until:
                    audio_after.append(now)
                    answered.set()
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(msg.data)
                    if event["type"] == "error":
                        raise RuntimeError(f"error event: {event.get('code')}")

        reader = asyncio.create_task(read())
        try:
            spoke_until = await _send_realtime(ws, fx.speech)
            silence = asyncio.create_task(_send_realtime(ws, bytes(FRAME * 75)))
            await asyncio.wait(
                {reader, asyncio.ensure_future(answered.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not answered.is_set():
                reader.result()
                raise RuntimeError("the socket closed before the agent answered")
            await silence
            await ws.send_json({"type": "end"})
            await asyncio.wait_for(reader, 10)
        finally:
            reader.cancel()
            await asyncio.wait([reader])
    return audio_after[0] - spoke_until


RUNNERS: dict[str, Callable[[aiohttp.ClientSession, Fixture], Awaitable[float]]] = {
    "tts_http": tts_http,
    "tts_ws": tts_ws,
    "stt_http": stt_http,
    "stt_ws": stt_ws,
    "convai": convai,
}


async def prepare(server: Server) -> Fixture:
    fx = Fixture(server, {"Authorization": f"Bearer {server.api_key}"})
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{server.url}/v1/tts",
            json={"text": QUESTION, "format": "pcm_16000"},
            headers=fx.headers,
        ) as r:
            r.raise_for_status()
            fx.speech = bytes(FRAME * 10) + await r.read() + bytes(FRAME * 25)
        async with s.post(
            f"{server.url}/v1/agents",
            json={"name": "soak", "voice": "slt", "knowledge": KNOWLEDGE},
            headers=fx.headers,
        ) as r:
            r.raise_for_status()
            fx.agent_id = (await r.json())["id"]
    return fx


async def sample_rss(pid: int, every: float, out: list[tuple[float, int]], t0: float) -> None:
    while True:
        out.append((round(time.monotonic() - t0, 2), rss_bytes(pid)))
        await asyncio.sleep(every)


async def load(fx: Fixture, seconds: float, concurrency: int, tally: Tally) -> int:
    deadline = time.monotonic() + seconds
    sessions = 0

    async def worker(first: int) -> None:
        nonlocal sessions
        turn = first
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                kind = KINDS[turn % len(KINDS)]
                turn += 1
                sessions += 1
                try:
                    latency = await asyncio.wait_for(RUNNERS[kind](s, fx), SESSION_TIMEOUT_S)
                    tally.latencies[kind].append(latency)
                except Exception as exc:  # every failure is a figure of the run
                    tally.errors[kind][f"{type(exc).__name__}: {str(exc)[:100]}"] += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return sessions


async def soak(server: Server, minutes: float, concurrency: int, cooldown: float) -> dict[str, Any]:
    fx = await prepare(server)
    t0 = time.monotonic()
    rss: list[tuple[float, int]] = []
    sampler = asyncio.create_task(sample_rss(server.pid, 1.0, rss, t0))
    try:
        await asyncio.sleep(2.0)  # a baseline before any load
        baseline = min(r for _, r in rss)
        load_started = time.monotonic() - t0
        tally = Tally()
        sessions = await load(fx, minutes * 60, concurrency, tally)
        load_ended = time.monotonic() - t0
        await asyncio.sleep(cooldown)
    finally:
        sampler.cancel()
        await asyncio.wait([sampler])
    during = [r for t, r in rss if load_started <= t <= load_ended] or [baseline]
    peak = max(during)
    after = rss[-1][1]
    came_back = after - baseline <= max(64 * MIB, (peak - baseline) // 4)
    return {
        "minutes": minutes,
        "concurrency": concurrency,
        "sessions": sessions,
        "errors": {k: dict(v) for k, v in tally.errors.items()},
        "error_count": sum(sum(v.values()) for v in tally.errors.values()),
        "latency_s": {k: percentiles(tally.latencies.get(k, [])) for k in KINDS},
        "rss_mib": {
            "baseline": round(baseline / MIB, 1),
            "peak": round(peak / MIB, 1),
            "after_cooldown": round(after / MIB, 1),
            "came_back_down": came_back,
        },
        "rss_timeline": [(t, round(r / MIB, 1)) for t, r in rss],
        "load_window_s": [round(load_started, 1), round(load_ended, 1)],
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"soak: {result['minutes']} min, {result['concurrency']} workers, "
        f"{result['sessions']} sessions, {result['error_count']} errors"
    )
    print(f"{'kind':<10} {'n':>5} {'p50 ms':>9} {'p99 ms':>9}")
    for kind, p in result["latency_s"].items():
        print(f"{kind:<10} {p['n']:>5} {p['p50'] * 1000:>9.0f} {p['p99'] * 1000:>9.0f}")
    for kind, errors in result["errors"].items():
        for what, n in errors.items():
            print(f"  error {kind}: {n} x {what}")
    m = result["rss_mib"]
    print(
        f"RSS MiB: baseline {m['baseline']}, peak {m['peak']}, after cool-down "
        f"{m['after_cooldown']} -> came back down: {m['came_back_down']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.0, help="length of the load (default 1)")
    ap.add_argument("--concurrency", type=int, default=4, help="sessions at once (default 4)")
    ap.add_argument(
        "--cooldown", type=float, default=IDLE_RELEASE_S * 3, help="idle seconds after the load"
    )
    args = ap.parse_args()
    env = {"VOICESTREAM_STT_IDLE_RELEASE_SECONDS": str(IDLE_RELEASE_S)}
    with running_server(env) as server:
        result = asyncio.run(soak(server, args.minutes, args.concurrency, args.cooldown))
    report(result)
    print(f"wrote {write_result('soak', result)}")


if __name__ == "__main__":
    main()
