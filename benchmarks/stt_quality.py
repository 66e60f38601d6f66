"""Word error rate of the server's ``POST /v1/stt``: engine × speaker voice × channel.

- Engines (``--engines``): each gets its own ``voicestream serve`` process, started with
  ``VOICESTREAM_STT_ENGINE`` set; ``/readyz`` must name that engine, so a server that ignored
  the setting is reported, not silently measured.
- Speakers (``--voices``): Piper ``en_US-joe-medium`` (a natural voice, the one the acceptance
  figures are about) and flite ``slt`` (robotic; pocketsphinx is tuned to it in effect),
  synthesized in this process and resampled to 16 kHz.
- Channels (``--channels``): ``16k`` sends the 16 kHz PCM as ``pcm_16000``; ``8k_ulaw`` is a
  phone line: resampled to 8 kHz and μ-law encoded here with the server's own media helpers,
  sent as ``ulaw_8000``, and decoded and upsampled back to 16 kHz by the server exactly as the
  telephony transports do (``media.decode``).
- Sentences: ``SENTENCES`` below, written for this benchmark (times, counts, prices, percent;
  ``--sentences N`` takes the first N). WER is over the whole corpus (jiwer), after the
  normalisation in ``wer_normalization.py`` applied to references and transcripts alike.
- Real-time factor per engine: request wall time ÷ audio duration, requests sent one at a
  time after a warm-up request, so it is the engine's speed plus the HTTP path, not queueing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp
import jiwer

from harness import Server, percentiles, running_server, write_result
from speakers import NATURAL, ROBOTIC, SAMPLE_RATE, speak
from voicestream.media.g711 import pcm16_to_ulaw
from voicestream.media.resample import resample
from wer_normalization import normalize

SENTENCES = [
    "The museum opens at nine and closes at five.",
    "What time does the museum open on Sunday?",
    "The train to the airport leaves at seven thirty.",
    "I would like to book a table for four people at eight.",
    "Adult tickets cost twelve dollars and children enter for free.",
    "The library has more than forty thousand books.",
    "Prices went up by five percent this year.",
    "The meeting room on the second floor is already booked.",
    "Turn left at the bank and walk for about ten minutes.",
    "The package should arrive within three business days.",
    "My appointment with the dentist is on Tuesday afternoon.",
    "Can you tell me how much the tickets cost?",
    "She has lived in this city for fifteen years.",
    "Please send the invoice to our accounting department.",
    "Tomorrow will be sunny with a high of twenty two degrees.",
    "We have three rooms available for next weekend.",
    "The doctor will see you in about twenty minutes.",
    "How long does the guided tour of the castle take?",
    "Our office is open from nine in the morning to five in the evening.",
    "Half of the students passed the exam on the first try.",
]
ENGINES = ["whisper", "pocketsphinx"]
CHANNELS = {"16k": "pcm_16000", "8k_ulaw": "ulaw_8000"}
# The acceptance targets, which are about a natural voice (issue 8).
TARGETS = {"16k": 0.06, "8k_ulaw": 0.12}


@dataclass(frozen=True)
class Clip:
    voice: str
    channel: str
    reference: str
    body: bytes
    seconds: float


def phone_line(pcm16k: bytes) -> bytes:
    return pcm16_to_ulaw(resample(pcm16k, SAMPLE_RATE, 8000))


def clips(voices: list[str], channels: list[str], sentences: list[str]) -> list[Clip]:
    out = []
    for voice in voices:
        for text in sentences:
            pcm = speak(voice, text)
            seconds = len(pcm) / 2 / SAMPLE_RATE
            for channel in channels:
                body = pcm if channel == "16k" else phone_line(pcm)
                out.append(Clip(voice, channel, text, body, seconds))
    return out


def engine_mismatch(srv: Server, engine: str) -> str | None:
    """Why the server is not running ``engine`` (it falls back when a model will not load)."""
    with urllib.request.urlopen(f"{srv.url}/readyz", timeout=10) as r:
        checks: dict[str, bool] = json.load(r)["checks"]
    names = [k.removeprefix("engine:") for k in checks if k.startswith("engine:")]
    if any(engine in name.lower() for name in names):
        return None
    return f"VOICESTREAM_STT_ENGINE={engine}, but the server's engines are {names}"


async def transcribe(s: aiohttp.ClientSession, srv: Server, clip: Clip) -> tuple[str, float]:
    t0 = time.perf_counter()
    async with s.post(
        f"{srv.url}/v1/stt",
        data=clip.body,
        params={"format": CHANNELS[clip.channel]},
        headers={"Authorization": f"Bearer {srv.api_key}"},
    ) as r:
        if r.status != 200:
            raise RuntimeError(f"/v1/stt answered {r.status}: {await r.text()}")
        text: str = (await r.json())["text"]
    return text, time.perf_counter() - t0


async def run_engine(srv: Server, work: list[Clip]) -> list[tuple[Clip, str, float]]:
    async with aiohttp.ClientSession() as s:
        await transcribe(s, srv, work[0])  # warm the path; not counted
        return [(clip, *await transcribe(s, srv, clip)) for clip in work]


def score(references: list[str], hypotheses: list[str]) -> dict[str, Any]:
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    out = jiwer.process_words(refs, hyps)
    words = out.hits + out.substitutions + out.deletions
    return {
        "wer": float(out.wer),
        "words": words,
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
    }


def rows_for(engine: str, results: list[tuple[Clip, str, float]]) -> list[dict[str, Any]]:
    rows = []
    for voice in dict.fromkeys(c.voice for c, _, _ in results):
        for channel in dict.fromkeys(c.channel for c, _, _ in results):
            mine = [(c, h, t) for c, h, t in results if c.voice == voice and c.channel == channel]
            audio = sum(c.seconds for c, _, _ in mine)
            rows.append(
                {
                    "engine": engine,
                    "voice": voice,
                    "channel": channel,
                    **score([c.reference for c, _, _ in mine], [h for _, h, _ in mine]),
                    "target_wer": TARGETS.get(channel) if voice == NATURAL else None,
                    "audio_s": audio,
                    "rtf": sum(t for _, _, t in mine) / audio,
                    "request_s": percentiles([t for _, _, t in mine]),
                    "transcripts": [
                        {"reference": c.reference, "heard": h, "normalized": normalize(h)}
                        for c, h, _ in mine
                    ],
                }
            )
    return rows


def engine_rtf(rows: list[dict[str, Any]]) -> float:
    """Wall time over audio time across an engine's rows (not the mean of their ratios)."""
    wall: float = sum(r["request_s"]["mean"] * r["request_s"]["n"] for r in rows)
    audio: float = sum(r["audio_s"] for r in rows)
    return wall / audio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sentences", type=int, default=len(SENTENCES), help="use the first N")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--voices", default=f"{NATURAL},{ROBOTIC}")
    ap.add_argument("--channels", default=",".join(CHANNELS))
    args = ap.parse_args()
    engines = args.engines.split(",")
    channels = args.channels.split(",")
    if unknown := set(channels) - set(CHANNELS):
        ap.error(f"unknown channel(s) {sorted(unknown)}; choose from {list(CHANNELS)}")
    sentences = SENTENCES[: max(1, args.sentences)]
    work = clips(args.voices.split(","), channels, sentences)

    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for engine in engines:
        with running_server({"VOICESTREAM_STT_ENGINE": engine}) as srv:
            if why := engine_mismatch(srv, engine):
                skipped[engine] = why
                continue
            rows += rows_for(engine, asyncio.run(run_engine(srv, work)))

    print(f"\n{len(sentences)} sentences; WER after wer_normalization.normalize")
    print(
        f"{'engine':>12} {'voice':>17} {'channel':>8} {'WER':>7} {'target':>7} "
        f"{'S/D/I':>9} {'RTF':>6} {'req p50':>8}"
    )
    for r in rows:
        target = f"{r['target_wer']:.0%}" if r["target_wer"] is not None else "-"
        sdi = f"{r['substitutions']}/{r['deletions']}/{r['insertions']}"
        print(
            f"{r['engine']:>12} {r['voice']:>17} {r['channel']:>8} {r['wer']:>7.1%} "
            f"{target:>7} {sdi:>9} {r['rtf']:>6.3f} {r['request_s']['p50'] * 1e3:>6.0f}ms"
        )
    for engine, why in skipped.items():
        print(f"{engine}: not measured: {why}")
    rtf = {
        e: engine_rtf([r for r in rows if r["engine"] == e]) for e in engines if e not in skipped
    }
    print(
        "RTF by engine (all voices and channels): "
        + ", ".join(f"{e} {v:.3f}" for e, v in rtf.items())
    )
    path = write_result(
        "stt_quality",
        {
            "sentences": sentences,
            "normalization": "benchmarks/wer_normalization.py",
            "rtf_by_engine": rtf,
            "skipped_engines": skipped,
            "rows": rows,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
