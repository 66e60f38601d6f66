"""dubbing/translation.py: the chat translator against a local fake endpoint, and the
ElevenLabs dubbing CSV."""

from __future__ import annotations

import json

import pytest

from fakes.openai_server import FakeOpenAI
from voicestream.config import load_settings
from voicestream.dubbing.translation import (
    ChatTranslator,
    parse_supplied_csv,
    translator_from_settings,
)
from voicestream.errors import EngineError, ValidationFailed


async def test_lines_go_numbered_and_come_back_in_order() -> None:
    async with FakeOpenAI() as fake:
        # Keys in another order than sent, and in a code fence, as chat models answer.
        fake.reply_text('```json\n{"2": "Adiós.", "1": "Hola, mundo."}\n```')
        fake.reply_text('{"1": "Gracias."}')
        translator = ChatTranslator(fake.base_url, "fake-model", "sk-test", batch_lines=2)
        out = await translator.translate(["Hello, world.", "", "Goodbye.", "Thanks."], "en", "es")
        assert out == ["Hola, mundo.", "", "Adiós.", "Gracias."]
        assert len(fake.requests) == 2  # a batch per request; the empty line is not sent
        first = fake.requests[0]
        assert first.body["model"] == "fake-model"
        assert first.headers["Authorization"] == "Bearer sk-test"
        system, user = first.messages
        assert system["role"] == "system" and "English" in system["content"]
        assert "Spanish" in system["content"]
        assert json.loads(user["content"]) == {"1": "Hello, world.", "2": "Goodbye."}
        assert json.loads(fake.requests[1].messages[1]["content"]) == {"1": "Thanks."}


@pytest.mark.parametrize(
    "reply",
    [
        '{"1": "Hola y adiós."}',  # two lines merged into one
        '{"1": "Hola.", "2": "Adiós.", "3": "Extra."}',
        '{"1": "Hola.", "3": "Adiós."}',
        "Hola. Adiós.",  # not JSON
        '["Hola.", "Adiós."]',
        '{"1": "Hola.", "2": 7}',
    ],
)
async def test_a_reply_that_does_not_map_back_is_an_engine_error(reply: str) -> None:
    async with FakeOpenAI() as fake:
        fake.reply_text(reply)
        translator = ChatTranslator(fake.base_url, "fake-model")
        with pytest.raises(EngineError) as caught:
            await translator.translate(["Hello.", "Goodbye."], "en", "es")
    assert caught.value.http_status == 502
    assert "does not map back" in caught.value.message


async def test_an_endpoint_failure_is_an_engine_error_with_its_status() -> None:
    async with FakeOpenAI() as fake:
        fake.reply_error(400, "model not found")
        translator = ChatTranslator(fake.base_url, "fake-model")
        with pytest.raises(EngineError) as caught:
            await translator.translate(["Hello."], "en", "es")
    assert caught.value.details == {"status": 400}
    assert not caught.value.retryable
    assert "model not found" in caught.value.message


def test_translator_from_settings_prefers_the_translation_endpoint() -> None:
    assert translator_from_settings(load_settings({})) is None
    llm = load_settings(
        {"VOICESTREAM_LLM_BASE_URL": "http://127.0.0.1:1/v1", "VOICESTREAM_LLM_MODEL": "agent"}
    )
    chosen = translator_from_settings(llm)
    assert chosen is not None and chosen.model == "agent"
    both = load_settings(
        {
            "VOICESTREAM_LLM_BASE_URL": "http://127.0.0.1:1/v1",
            "VOICESTREAM_LLM_MODEL": "agent",
            "VOICESTREAM_TRANSLATION_BASE_URL": "http://127.0.0.1:2/v1",
            "VOICESTREAM_TRANSLATION_MODEL": "translate",
        }
    )
    chosen = translator_from_settings(both)
    assert chosen is not None
    assert (chosen.base_url, chosen.model) == ("http://127.0.0.1:2/v1", "translate")


GOOD_CSV = (
    "speaker,start_time,end_time,transcription,translation\n"
    "speaker_0,0.5,2.25,Hello there.,Hola.\n"
    'speaker_1,00:00:03.100,00:00:05,"Yes, well.","Sí, bueno."\n'
    "speaker_0,00:01:02,1:03.5,Bye.,Adiós.\n"
)


def test_supplied_csv_reads_seconds_and_clock_times() -> None:
    lines = parse_supplied_csv(("\ufeff" + GOOD_CSV).encode())  # a BOM, as Excel writes
    assert [(x.speaker, x.start, x.end) for x in lines] == [
        ("speaker_0", 0.5, 2.25),
        ("speaker_1", 3.1, 5.0),
        ("speaker_0", 62.0, 63.5),
    ]
    assert [(x.text, x.translation) for x in lines][1] == ("Yes, well.", "Sí, bueno.")


HEADER = "speaker,start_time,end_time,transcription,translation\n"


@pytest.mark.parametrize(
    ("body", "row", "says"),
    [
        (HEADER + "s,1,2,a,b\ns,abc,4,c,d\n", 2, "bad start_time 'abc'"),
        (HEADER + "s,1,2,a,b\ns,3,00:61:00,c,d\n", 2, "bad end_time"),
        (HEADER + "s,-1,2,a,b\n", 1, "bad start_time"),
        (HEADER + "s,1,2,a,b\ns,1,2,a,b\ns,5,4,c,d\n", 3, "is not after start_time"),
        (HEADER + "s,3,3,a,b\n", 1, "is not after"),
        (HEADER + "s,1,2,a\n", 1, "missing translation"),
        (HEADER + "s,1,2,,\n", 1, "both transcription and translation are empty"),
        ("speaker,start_time,transcription,translation\ns,1,a,b\n", 0, "lacks end_time"),
        (HEADER, 1, "no rows"),
        ("", 0, "lacks speaker"),
    ],
)
def test_bad_csvs_name_the_row(body: str, row: int, says: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_supplied_csv(body.encode())
    assert caught.value.http_status == 422
    assert caught.value.details["row"] == row
    assert says in caught.value.message
    if row:
        assert caught.value.message.startswith(f"row {row}:")


def test_a_csv_that_is_not_text_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="not UTF-8"):
        parse_supplied_csv(b"\xff\xfe\x00bad")
