"""Dubbing: wall time per minute of source media, per stage, on this machine's CPUs.

The source is ``--minutes`` of speech (Piper ``en_US-joe-medium`` reading tests/data's
sentences, with pauses between them) under a 64x64, 10 fps video, made here with PyAV. The
pipeline (``voicestream.dubbing.pipeline``) runs in this process on the default engines, the
way a worker runs a ``dubbing`` job, and each stage is timed:

1. ``analyse``: demux, pause windows, Whisper words, segments and voices (same-language
   re-voicing, so translation is a copy);
2. ``render``: per-segment synthesis, time fit, the mix over the ducked source, loudness and the
   mux under the copied video;
3. ``render (cached)``: the same render again, every segment from the speech cache, so what is
   left is fit, mix, loudness and mux; the difference from 2 is the synthesis.

Figures are seconds per minute of source (and the real-time factor); they print and land in
benchmarks/results/dubbing-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from harness import ROOT, write_result
from speakers import NATURAL, SAMPLE_RATE, speak
from voicestream.config import load_settings
from voicestream.dubbing.model import DubOptions
from voicestream.dubbing.pipeline import analyse, render
from voicestream.engines.catalog import build_default_registry
from voicestream.engines.executor import InferenceExecutor
from voicestream.jobs.context import JobContext, JobEngines
from voicestream.jobs.speech import SpeechCache

PAUSE_S = 0.6
FPS = 10


def _speech(minutes: float) -> bytes:
    sentences = [
        line.strip()
        for line in (ROOT / "tests" / "data" / "sentences.txt").read_text().splitlines()
        if line.strip()
    ]
    pause = bytes(2 * round(PAUSE_S * SAMPLE_RATE))
    pieces: list[bytes] = []
    total = 0
    index = 0
    while total < minutes * 60 * SAMPLE_RATE * 2:
        pcm = speak(NATURAL, sentences[index % len(sentences)]) + pause
        pieces.append(pcm)
        total += len(pcm)
        index += 1
    return b"".join(pieces)


def _make_source(path: Path, pcm: bytes) -> float:
    """An mp4 of a 64x64 grey video and ``pcm`` as AAC; its duration in seconds."""
    seconds = len(pcm) / 2 / SAMPLE_RATE
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=FPS)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=SAMPLE_RATE)
        frame_image = np.full((64, 64, 3), 128, dtype=np.uint8)
        for index in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(frame_image, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = np.frombuffer(pcm, dtype="<i2")
        step = 1024
        for start in range(0, samples.size, step):
            block = samples[start : start + step].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            frame.time_base = Fraction(1, SAMPLE_RATE)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return seconds


async def _run(minutes: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vs-bench-dub-") as tmp:
        root = Path(tmp)
        settings = load_settings({}, data_dir=root / "data")
        registry = build_default_registry(settings)
        await asyncio.to_thread(registry.warm_up)
        tts = {name: InferenceExecutor(f"tts-{name}", 1) for name in registry.tts_engine_names()}
        stt = InferenceExecutor("stt", 1)
        media = InferenceExecutor("media", 1)

        async def report(percent: int | None) -> bool:
            return False

        ctx = JobContext(
            job_id=uuid.uuid4(),
            workspace_id=uuid.uuid4(),
            attempt=1,
            files=None,  # type: ignore[arg-type]  # the pipeline reads paths, not stored files
            engines=JobEngines(registry, tts, stt, media),
            settings=settings,
            _report=report,
        )
        source = root / "source.mp4"
        seconds = _make_source(source, _speech(minutes))
        options = DubOptions(source_language="en", target_languages=["en"])
        cache = SpeechCache(root / "cache")
        stages: dict[str, float] = {}
        try:
            started = time.perf_counter()
            plan = await analyse(ctx, source, options)
            stages["analyse"] = time.perf_counter() - started
            for stage in ("render", "render_cached"):
                workdir = root / stage
                workdir.mkdir()
                started = time.perf_counter()
                rendered = await render(
                    ctx, source, plan, "en", options, workdir=workdir, cache=cache
                )
                stages[stage] = time.perf_counter() - started
        finally:
            for executor in (*tts.values(), stt, media):
                await asyncio.to_thread(executor.shutdown)
        per_minute = {name: value / (seconds / 60) for name, value in stages.items()}
        return {
            "source_seconds": round(seconds, 1),
            "segments": len(plan.segments),
            "stages_s": {k: round(v, 2) for k, v in stages.items()},
            "per_source_minute_s": {k: round(v, 2) for k, v in per_minute.items()},
            "synthesis_s": round(stages["render"] - stages["render_cached"], 2),
            "real_time_factor": round((stages["analyse"] + stages["render"]) / seconds, 3),
            "cached_render": {"synthesized": rendered.synthesized, "reused": rendered.reused},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="source length")
    args = parser.parse_args()
    result = asyncio.run(_run(args.minutes))
    print(f"source: {result['source_seconds']} s, {result['segments']} segments")
    for name, value in result["stages_s"].items():
        per = result["per_source_minute_s"][name]
        print(f"  {name:<14} {value:8.2f} s   {per:7.2f} s per source minute")
    print(f"  synthesis      {result['synthesis_s']:8.2f} s (render - cached render)")
    print(f"  real-time factor (analyse + render): {result['real_time_factor']}")
    path = write_result("dubbing", result)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
