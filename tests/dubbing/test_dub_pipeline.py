"""dubbing/pipeline.py end to end on a tiny video whose speech the server's own TTS made:
analyse (Whisper hears it back), render (timed, mixed, muxed under the copied video), and the
speech cache on re-renders; plus the pieces that need no audio."""

from __future__ import annotations

import asyncio
import json
import uuid
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fakes.openai_server import FakeOpenAI
from jobs.job_types_harness import JobTypeRunner
from speech_onsets import speech_starts
from voicestream.dubbing.model import DubOptions, DubSegment
from voicestream.dubbing.pipeline import analyse, map_cues, render, source_subtitles
from voicestream.dubbing.translation import ChatTranslator, parse_supplied_csv
from voicestream.engines.catalog import EngineRegistry
from voicestream.errors import TranslationUnavailable, ValidationFailed
from voicestream.jobs.context import JobContext
from voicestream.jobs.speech import SpeechCache
from voicestream.media.chunked_decode import ChunkedDecoder
from voicestream.media.loudness import integrated_loudness
from voicestream.media.muxing import probe, video_packets
from voicestream.media.resample import resample
from voicestream.media.subtitles import Cue, parse_srt
from voicestream.media.wav import wav_header

RATE = 16000
SENTENCES = (
    "The lighthouse keeper climbed the tower every evening.",
    "Ships far out at sea could see the beam.",
)
SPANISH = ("El farero subía a la torre.", "Los barcos veían la luz.")
LEAD_S, GAP_S, TAIL_S = 0.7, 1.2, 0.8


def _words(text: str) -> list[str]:
    return [w.strip(".,!?").lower() for w in text.split()]


def _make_source(registry: EngineRegistry, path: Path) -> list[float]:
    """A 64x64 @ 10 fps MP4 with the sentences (flite slt) as AAC; where each one starts."""
    engine, voice = registry.voice("slt")
    pieces = [np.zeros(int(LEAD_S * RATE), np.int16)]
    starts = []
    at = LEAD_S
    for index, text in enumerate(SENTENCES):
        spoken = engine.synthesize(text, voice)
        speech = np.frombuffer(resample(spoken.pcm, spoken.sample_rate, RATE), dtype="<i2")
        starts.append(at)
        pieces.append(speech)
        at += speech.size / RATE
        gap = GAP_S if index + 1 < len(SENTENCES) else TAIL_S
        pieces.append(np.zeros(int(gap * RATE), np.int16))
        at += gap
    audio = np.concatenate(pieces)
    pcm = audio.tobytes()
    # The real onsets: where each sentence's sound starts, past the voice's own lead-in.
    onsets = speech_starts(pcm, RATE, [(s, s + 1.0) for s in starts])
    seconds = audio.size / RATE
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        sound = container.add_stream("aac", rate=RATE)
        sound.codec_context.layout = "mono"
        for i in range(int(seconds * 10)):
            shade = np.full((64, 64, 3), (i * 9) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(shade, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = audio.reshape(1, -1)
        block = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        block.sample_rate, block.pts, block.time_base = RATE, 0, Fraction(1, RATE)
        container.mux(sound.encode(block))
        container.mux(sound.encode(None))
    assert all(o is not None for o in onsets)
    return [float(o) for o in onsets if o is not None]


def _decode(path: Path, rate: int) -> bytes:
    with path.open("rb") as file:
        decoder = ChunkedDecoder(file, rate)
        try:
            return decoder.read(600.0)
        finally:
            decoder.close()


def _audio_tracks(path: Path) -> list[str | None]:
    with av.open(str(path)) as container:
        return [s.metadata.get("language") for s in container.streams.audio]


@pytest.fixture
def ctx(runner: JobTypeRunner) -> JobContext:
    async def report(percent: int | None) -> bool:
        runner.progress.append(percent)
        return False

    return JobContext(
        job_id=uuid.uuid4(),
        workspace_id=runner.workspace_id,
        attempt=1,
        files=None,  # type: ignore[arg-type]  # the pipeline reads and writes local paths only
        engines=runner.engines,
        settings=runner.settings,
        _report=report,
    )


async def test_same_language_dub_of_a_video(
    ctx: JobContext, runner: JobTypeRunner, registry: EngineRegistry, tmp_path: Path
) -> None:
    source = tmp_path / "source.mp4"
    onsets = await asyncio.to_thread(_make_source, registry, source)
    async with FakeOpenAI() as fake:
        fake.reply_text(json.dumps({"1": SPANISH[0], "2": SPANISH[1]}))
        translator = ChatTranslator(fake.base_url, "fake-model")
        options = DubOptions(target_languages=["en", "es"], num_speakers=2)
        plan = await analyse(ctx, source, options, translator=translator)
    # Segments: one per sentence, the words Whisper heard back, starting where the speech does.
    assert [_words(s.text) for s in plan.segments] == [_words(t) for t in SENTENCES]
    for segment, onset in zip(plan.segments, onsets, strict=True):
        assert abs(segment.start - onset) < 0.15, (segment, onset)
    assert plan.has_video and plan.source_language == "en"
    assert plan.duration == pytest.approx(probe(source).duration, abs=0.01)
    assert [s.translations["es"] for s in plan.segments] == list(SPANISH)
    assert [s.translations["en"] for s in plan.segments] == [s.text for s in plan.segments]
    # One speaker (no diarization model), said so; her pitch picks the female English voice.
    (speaker,) = plan.speakers
    assert speaker.pitch_hz is not None and speaker.pitch_hz > 165
    assert speaker.voices["en"] == "slt"
    assert speaker.voices["es"].startswith("espeak-es")
    assert any("diarization" in note and "2 speakers" in note for note in plan.notes)
    srt, vtt = source_subtitles(plan)
    assert [c.text for c in parse_srt(srt)] == [s.text for s in plan.segments]
    assert vtt.startswith("WEBVTT")

    cache = SpeechCache(tmp_path / "cache")
    quiet = options.model_copy(update={"drop_background_audio": True})
    runner.progress.clear()
    first = await render(ctx, source, plan, "en", quiet, workdir=tmp_path / "out", cache=cache)
    assert (first.synthesized, first.reused) == (2, 0)
    assert first.media == tmp_path / "out" / "dubbed_en.mp4"
    assert (first.media_format, first.content_type) == ("mp4", "video/mp4")
    values = [p for p in runner.progress if p is not None]
    assert values == sorted(values) and values[-1] == 100
    info = await asyncio.to_thread(probe, first.media)
    assert info.has_video and info.has_audio
    assert await asyncio.to_thread(_audio_tracks, first.media) == ["eng", "eng"]
    same = await asyncio.gather(
        asyncio.to_thread(video_packets, source), asyncio.to_thread(video_packets, first.media)
    )
    assert same[0] == same[1]  # the video stream copied packet for packet
    dubbed = await asyncio.to_thread(_decode, first.media, RATE)
    spans = [(s.start - 0.5, s.end) for s in plan.segments]
    for onset, dubbed_onset in zip(onsets, speech_starts(dubbed, RATE, spans), strict=True):
        assert dubbed_onset is not None and abs(dubbed_onset - onset) <= 0.15
    assert integrated_loudness(dubbed, RATE) == pytest.approx(-16.0, abs=1.5)
    # Subtitles at the dub's spoken words: every segment's words, the first at its onset.
    cues = parse_srt(first.srt)
    assert " ".join(c.text for c in cues) == " ".join(s.text for s in plan.segments)
    assert all(len(c.text) <= 42 for c in cues)
    for segment, onset in zip(plan.segments, onsets, strict=True):
        (opening,) = [c for c in cues if segment.text.startswith(c.text)]
        assert abs(opening.start - onset) < 0.15
        assert all(c.end <= segment.end + 0.5 for c in cues if c.start < segment.end)

    # A second render (now over the ducked source) synthesizes nothing; one edit, one segment.
    again = await render(ctx, source, plan, "en", options, workdir=tmp_path / "out", cache=cache)
    assert (again.synthesized, again.reused) == (0, 2)
    plan.segments[1].translations["en"] = "Ships at sea could see the light."
    edited = await render(ctx, source, plan, "en", options, workdir=tmp_path / "out", cache=cache)
    assert (edited.synthesized, edited.reused) == (1, 1)
    assert "Ships at sea could see the light." in edited.srt


async def test_supplied_csv_and_subtitles_give_segments_and_translations(
    ctx: JobContext, registry: EngineRegistry, tmp_path: Path
) -> None:
    source = tmp_path / "source.mp4"
    onsets = await asyncio.to_thread(_make_source, registry, source)
    csv = (
        "speaker,start_time,end_time,transcription,translation\n"
        f"narrator,{onsets[1]:.3f},{onsets[1] + 2:.3f},Ships far out at sea.,Schiffe auf See.\n"
        f"narrator,00:00:0{onsets[0]:.3f},00:00:03.500,The keeper climbed.,Der Wärter stieg.\n"
    )
    cues = {"fr": [Cue(onsets[0], 3.0, "Le gardien monta."), Cue(onsets[1], 7.0, "Des navires.")]}
    options = DubOptions(source_language="en-US", target_languages=["de", "fr"])
    plan = await analyse(
        ctx, source, options, supplied=parse_supplied_csv(csv.encode()), supplied_subtitles=cues
    )
    # The CSV's lines are the segments, in time order, with its speaker; nothing transcribed.
    assert [(s.id, s.text, s.speaker_id) for s in plan.segments] == [
        ("seg_0000", "The keeper climbed.", "narrator"),
        ("seg_0001", "Ships far out at sea.", "narrator"),
    ]
    assert plan.segments[0].start == pytest.approx(onsets[0], abs=0.001)
    german = [s.translations["de"] for s in plan.segments]
    assert german == ["Der Wärter stieg.", "Schiffe auf See."]
    assert [s.translations["fr"] for s in plan.segments] == ["Le gardien monta.", "Des navires."]
    (speaker,) = plan.speakers
    assert speaker.id == "narrator" and speaker.pitch_hz is not None
    assert speaker.voices["de"] == "espeak-de" and speaker.voices["fr"] == "espeak-fr"
    assert not any("diarization" in note for note in plan.notes)


def _wav_source(registry: EngineRegistry, path: Path) -> float:
    engine, voice = registry.voice("slt")
    spoken = engine.synthesize(SENTENCES[1], voice)
    pcm = bytes(spoken.sample_rate) + spoken.pcm  # half a second of silence first
    path.write_bytes(wav_header(spoken.sample_rate, len(pcm) // 2) + pcm)
    return len(pcm) / 2 / spoken.sample_rate


async def test_an_audio_source_is_dubbed_into_the_asked_format(
    ctx: JobContext, registry: EngineRegistry, tmp_path: Path
) -> None:
    source = tmp_path / "voice.wav"
    seconds = await asyncio.to_thread(_wav_source, registry, source)
    csv = f"speaker,start_time,end_time,transcription,translation\ns,0.5,{seconds:.2f},Ships.,\n"
    options = DubOptions(target_languages=["en"], output_format="mp3_44100_128")
    plan = await analyse(ctx, source, options, supplied=parse_supplied_csv(csv.encode()))
    assert not plan.has_video and plan.segments[0].translations == {"en": "Ships."}
    done_cache = SpeechCache(tmp_path / "c")
    done = await render(ctx, source, plan, "en", options, workdir=tmp_path, cache=done_cache)
    assert done.media == tmp_path / "dubbed_en.mp3"
    assert (done.media_format, done.content_type) == ("mp3_44100_128", "audio/mpeg")
    assert done.duration == pytest.approx(seconds, abs=0.05)
    decoded = await asyncio.to_thread(_decode, done.media, RATE)
    assert len(decoded) / 2 / RATE == pytest.approx(seconds, abs=0.1)
    assert [c.text for c in parse_srt(done.srt)] == ["Ships."]
    with pytest.raises(ValidationFailed, match="no de text"):
        await render(ctx, source, plan, "de", options, workdir=tmp_path, cache=done_cache)


async def test_a_foreign_target_without_any_translation_fails_before_decoding(
    ctx: JobContext, tmp_path: Path
) -> None:
    missing = tmp_path / "never-read.mp4"  # not even there: the check comes first
    with pytest.raises(TranslationUnavailable) as caught:
        await analyse(ctx, missing, DubOptions(target_languages=["en", "de"]))
    assert caught.value.code == "translation_unavailable" and caught.value.http_status == 422
    assert caught.value.details["language"] == "de"


def test_subtitle_cues_go_to_the_segment_they_overlap_most() -> None:
    segments = [
        DubSegment(id="seg_0000", start=0.0, end=2.0, speaker_id="speaker_0", text="a"),
        DubSegment(id="seg_0001", start=3.0, end=5.0, speaker_id="speaker_0", text="b"),
        DubSegment(id="seg_0002", start=8.0, end=9.0, speaker_id="speaker_0", text="c"),
    ]
    cues = [
        Cue(0.1, 1.0, "Hola"),
        Cue(1.0, 3.2, "amigo."),  # mostly over the first segment
        Cue(3.1, 4.9, "Adiós."),
        Cue(6.0, 7.0, "nothing under it"),
    ]
    assert map_cues(segments, cues) == {"seg_0000": "Hola amigo.", "seg_0001": "Adiós."}
