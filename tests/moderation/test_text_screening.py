"""Block lists (normalized, whole words) and the text screen every TTSStream applies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fakes.scripted_engines import ToneTTS
from voicestream.engines.executor import InferenceExecutor
from voicestream.engines.tts_stream import TEXT_SCREEN, SpeechChunk, TTSStream
from voicestream.errors import ContentBlocked
from voicestream.moderation.terms import TermList, normalize


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("say ZORP now", "zorp"),
        ("say Zórp now", "zorp"),
        ("say ＺＯＲＰ now", "zorp"),  # noqa: RUF001  (full-width letters, on purpose)
        ("zorp.", "zorp"),
        ("zorps and zorped", None),
        ("the class is open", None),
        ("a big   BAD\nwolf", "big bad wolf"),
        ("big bad", None),
    ],
)
def test_terms_match_whole_normalized_words(text: str, found: str | None) -> None:
    terms = TermList(["Zorp", "big bad wolf", "ass", "  "])
    assert terms.first_match(normalize(text)) == found


def test_an_empty_list_matches_nothing() -> None:
    assert not TermList(["", " "])
    assert TermList([]).first_match("anything") is None


@pytest.fixture
async def executor() -> AsyncIterator[InferenceExecutor]:
    pool = InferenceExecutor("test-tts", 1)
    yield pool
    pool.shutdown()


async def test_a_stream_screens_its_queued_clauses_in_one_call_before_any_audio(
    executor: InferenceExecutor,
) -> None:
    engine, asked = ToneTTS(50), []

    async def screen(text: str) -> str:
        asked.append(text)
        if "zorp" in text:
            raise ContentBlocked("blocked", details={"category": "block_list"})
        return text

    stream = TTSStream(engine, engine.voice, executor, screen=screen)
    stream.push_text("Hello there. How are you? Say zorp.")
    stream.end_input()
    with pytest.raises(ContentBlocked):
        async for _ in stream:
            pass
    assert [text.strip() for text in asked] == ["Hello there. How are you? Say zorp."]
    assert engine.spoken == [], "nothing synthesized before the refusal"


async def test_a_stream_takes_the_screen_of_its_context_and_speaks_a_replacement(
    executor: InferenceExecutor,
) -> None:
    engine = ToneTTS(50)

    async def replace(text: str) -> str:
        return "Sorry." if "zorp" in text.lower() else text

    token = TEXT_SCREEN.set(replace)
    try:
        stream = TTSStream(engine, engine.voice, executor)
    finally:
        TEXT_SCREEN.reset(token)
    stream.push_text("Hello there. ")
    said = [chunk.text async for chunk in _first(stream)]
    stream.push_text("Zorp is the word. And more.")
    stream.end_input()
    said += [chunk.text async for chunk in stream]
    assert [text.strip() for text in said] == ["Hello there.", "Sorry."]
    assert [text.strip() for text in engine.spoken] == ["Hello there.", "Sorry."]


async def _first(stream: TTSStream) -> AsyncIterator[SpeechChunk]:
    async for chunk in stream:
        yield chunk
        return
