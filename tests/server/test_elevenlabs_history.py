"""ElevenLabs ``/v1/history`` through the official SDK on a real server, checked by content.

Each test works in a workspace of its own (a fresh key), so the listings hold exactly what the
test generated.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from elevenlabs import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError

from fixtures_services import unique_name
from helpers import corpus_wer, sentences
from voicestream.rest.resources import METRICS, POOL
from voicestream.store.keys import ApiKeyRepository
from voicestream.transports.elevenlabs_rest import PREFIX

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture


async def _new_key(server: RunningServer, prefix: str) -> str:
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=unique_name(prefix), role="owner"
    )
    return key


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # Our own httpx client, so its connections are closed when the test ends.
    async with httpx.AsyncClient(timeout=120) as client:
        yield client


@pytest.fixture
async def key(server: RunningServer) -> str:
    return await _new_key(server, "el-history")


@pytest.fixture
def client(server: RunningServer, key: str, http: httpx.AsyncClient) -> AsyncElevenLabs:
    return AsyncElevenLabs(base_url=f"{server.url}{PREFIX}", api_key=key, httpx_client=http)


async def _speak(client: AsyncElevenLabs, text: str, **kwargs: Any) -> tuple[str | None, bytes]:
    """``convert`` through the SDK's raw client: the history-item-id header and the audio."""
    async with client.text_to_speech.with_raw_response.convert("slt", text=text, **kwargs) as r:
        audio = b"".join([c async for c in r.data])
        return r.headers.get("history-item-id"), audio


async def _audio(client: AsyncElevenLabs, item_id: str) -> bytes:
    return b"".join([c async for c in client.history.get_audio(item_id)])


async def _download(client: AsyncElevenLabs, ids: list[str], **kwargs: Any) -> bytes:
    return b"".join([c async for c in client.history.download(history_item_ids=ids, **kwargs)])


async def _transcribe(client: AsyncElevenLabs, audio: bytes, name: str) -> str:
    result = await client.speech_to_text.convert(model_id="scribe_v1", file=(name, audio))
    return str(result.text)


async def test_generations_are_listed_paged_and_say_their_text(client: AsyncElevenLabs) -> None:
    refs = sentences()[:3]
    spoken: dict[str, bytes] = {}
    ids: list[str] = []
    for text in refs:
        item_id, audio = await _speak(
            client, text, model_id="eleven_flash_v2_5", voice_settings={"stability": 0.4}
        )
        assert item_id is not None and item_id.isalnum() and len(item_id) == 20
        ids.append(item_id)
        spoken[item_id] = audio

    first = await client.history.list(page_size=2)
    assert [h.history_item_id for h in first.history] == [ids[2], ids[1]]
    assert first.has_more and first.last_history_item_id == ids[1]
    rest = await client.history.list(page_size=2, start_after_history_item_id=ids[1])
    assert [h.history_item_id for h in rest.history] == [ids[0]] and not rest.has_more
    oldest = await client.history.list(sort_direction="asc")
    assert [h.history_item_id for h in oldest.history] == ids

    hyps = []
    for text, item_id in zip(refs, ids, strict=True):
        item = await client.history.get(item_id)
        assert item.text == text and item.voice_id == "slt" and item.voice_name
        assert item.model_id == "eleven_flash_v2_5" and item.source == "TTS"
        assert item.content_type == "audio/mpeg" and item.output_format == "mp3_44100_128"
        assert item.character_count_change_to - item.character_count_change_from == len(text)
        assert item.settings == {"stability": 0.4}
        assert abs(item.date_unix - time.time()) < 3600
        audio = await _audio(client, item_id)
        assert audio == spoken[item_id], "the audio as it was streamed"
        hyps.append(await _transcribe(client, audio, "h.mp3"))
    assert corpus_wer(refs, hyps) <= 0.35, list(zip(refs, hyps, strict=True))

    found = await client.history.list(search=refs[1].split()[1].upper())
    assert ids[1] in [h.history_item_id for h in found.history]
    assert (await client.history.list(voice_id="rms")).history == []


async def test_every_tts_variant_is_recorded(client: AsyncElevenLabs) -> None:
    texts = [
        "The weather is nice today.",
        "Please call me back tomorrow morning.",
        "I would like to book a table for two people.",
        "The meeting has been moved to next week.",
    ]
    fmt = "pcm_16000"
    made: list[bytes] = []
    async with client.text_to_speech.with_raw_response.stream(
        "slt", text=texts[0], output_format=fmt
    ) as r:
        made.append(b"".join([c async for c in r.data]))
        assert r.headers.get("history-item-id")
    made.append(
        b"".join(
            [c async for c in client.text_to_speech.stream("slt", text=texts[1], output_format=fmt)]
        )
    )
    res = await client.text_to_speech.convert_with_timestamps(
        "slt", text=texts[2], output_format=fmt
    )
    made.append(base64.b64decode(res.audio_base_64))
    chunks = [
        c
        async for c in client.text_to_speech.stream_with_timestamps(
            "slt", text=texts[3], output_format=fmt
        )
    ]
    made.append(b"".join(base64.b64decode(c.audio_base_64) for c in chunks))

    page = await client.history.list(sort_direction="asc")
    assert [h.text for h in page.history] == texts
    hyps = []
    for item, audio in zip(page.history, made, strict=True):
        assert item.content_type == "audio/pcm" and item.output_format == fmt
        stored = await _audio(client, item.history_item_id)
        assert stored == audio
        result = await client.speech_to_text.convert(
            model_id="scribe_v1", file=("a.pcm", stored), file_format="pcm_s16le_16"
        )
        hyps.append(result.text)
    assert corpus_wer(texts, hyps) <= 0.35, list(zip(texts, hyps, strict=True))


async def test_download_one_file_or_a_zip(client: AsyncElevenLabs) -> None:
    refs = sentences()[3:6]
    ids = []
    for text in refs:
        item_id, _ = await _speak(client, text)
        assert item_id is not None
        ids.append(item_id)

    single = await _download(client, [ids[0]])
    assert single == await _audio(client, ids[0])

    archive = zipfile.ZipFile(io.BytesIO(await _download(client, ids)))
    assert sorted(archive.namelist()) == sorted(f"{i}.mp3" for i in ids)
    hyps = [await _transcribe(client, archive.read(f"{i}.mp3"), "z.mp3") for i in ids]
    assert corpus_wer(refs, hyps) <= 0.35, list(zip(refs, hyps, strict=True))

    wavs = zipfile.ZipFile(io.BytesIO(await _download(client, ids, output_format="wav")))
    assert sorted(wavs.namelist()) == sorted(f"{i}.wav" for i in ids)
    hyps = []
    for i in ids:
        wav = wavs.read(f"{i}.wav")
        assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
        hyps.append(await _transcribe(client, wav, "z.wav"))
    assert corpus_wer(refs, hyps) <= 0.35, list(zip(refs, hyps, strict=True))


async def test_delete_then_not_found(client: AsyncElevenLabs) -> None:
    keep, _ = await _speak(client, "Keep this one.")
    gone, _ = await _speak(client, "Delete this one.")
    assert keep and gone
    deleted = await client.history.delete(gone)
    assert deleted.status == "ok"
    for call in (client.history.get, client.history.delete, _audio_call(client)):
        with pytest.raises(ApiError) as info:
            await call(gone)
        assert info.value.status_code == 404
        assert info.value.body["detail"]["status"] == "not_found"
    listed = await client.history.list()
    assert [h.history_item_id for h in listed.history] == [keep]


def _audio_call(client: AsyncElevenLabs) -> Any:
    async def call(item_id: str) -> bytes:
        return await _audio(client, item_id)

    return call


async def test_enable_logging_false_records_nothing(client: AsyncElevenLabs) -> None:
    item_id, audio = await _speak(client, "Do not remember this.", enable_logging=False)
    assert item_id is None and len(audio) > 1000
    res = await client.text_to_speech.convert_with_timestamps(
        "slt", text="Nor this.", enable_logging=False
    )
    assert res.audio_base_64
    chunks = [
        c
        async for c in client.text_to_speech.stream_with_timestamps(
            "slt", text="Nor this either.", enable_logging=False
        )
    ]
    assert chunks
    assert (await client.history.list()).history == []
    # Logged again as soon as the flag is not false.
    item_id, _ = await _speak(client, "Remember this.", enable_logging=True)
    assert [h.history_item_id for h in (await client.history.list()).history] == [item_id]


async def test_another_workspace_cannot_see_the_item(
    server: RunningServer, client: AsyncElevenLabs, http: httpx.AsyncClient
) -> None:
    item_id, _ = await _speak(client, "This belongs to the first workspace.")
    assert item_id
    stranger = AsyncElevenLabs(
        base_url=f"{server.url}{PREFIX}",
        api_key=await _new_key(server, "el-history-stranger"),
        httpx_client=http,
    )
    assert (await stranger.history.list()).history == []
    for call in (stranger.history.get, stranger.history.delete, _audio_call(stranger)):
        with pytest.raises(ApiError) as info:
            await call(item_id)
        assert info.value.status_code == 404
    with pytest.raises(ApiError) as info:
        await _download(stranger, [item_id])
    assert info.value.status_code == 404
    with pytest.raises(ApiError) as info:
        await stranger.history.list(start_after_history_item_id=item_id)
    assert info.value.status_code == 422
    # Untouched for its owner.
    assert (await client.history.get(item_id)).text == "This belongs to the first workspace."


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/v1/history?page_size=0", {}, 422),
        ("GET", "/v1/history?page_size=1001", {}, 422),
        ("GET", "/v1/history?page_size=ten", {}, 422),
        ("GET", "/v1/history?sort_direction=up", {}, 422),
        ("GET", "/v1/history?date_before_unix=yesterday", {}, 422),
        ("GET", "/v1/history?date_after_unix=99999999999999999", {}, 422),
        ("GET", "/v1/history?start_after_history_item_id=NoSuchItem123", {}, 422),
        ("GET", "/v1/history/NoSuchItem123", {}, 404),
        ("GET", "/v1/history/not-an-id!", {}, 404),
        ("GET", "/v1/history/NoSuchItem123/audio", {}, 404),
        ("DELETE", "/v1/history/NoSuchItem123", {}, 404),
        ("POST", "/v1/history/download", {"data": b"{not json"}, 400),
        ("POST", "/v1/history/download", {"data": b"[1, 2]"}, 422),
        ("POST", "/v1/history/download", {"json": {}}, 422),
        ("POST", "/v1/history/download", {"json": {"history_item_ids": []}}, 422),
        ("POST", "/v1/history/download", {"json": {"history_item_ids": [1, 2]}}, 422),
        ("POST", "/v1/history/download", {"json": {"history_item_ids": "abc"}}, 422),
        ("POST", "/v1/history/download", {"json": {"history_item_ids": ["a"] * 101}}, 422),
        ("POST", "/v1/history/download", {"json": {"history_item_ids": ["NoSuch1"]}}, 404),
        (
            "POST",
            "/v1/history/download",
            {"json": {"history_item_ids": ["NoSuch1"], "output_format": "mp3"}},
            422,
        ),
        ("POST", "/v1/text-to-speech/slt?enable_logging=maybe", {"json": {"text": "Hi."}}, 422),
    ],
)
async def test_bad_requests_get_elevenlabs_shaped_4xx(
    server: RunningServer,
    key: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.request(
            method, f"{server.url}{PREFIX}{path}", headers={"xi-api-key": key}, **kwargs
        ) as r,
    ):
        body = await r.json()
        assert r.status == status, body
    detail = body["detail"]
    if status == 422:
        assert isinstance(detail, list) and detail[0]["msg"]
    else:
        assert detail["status"] and detail["message"]
    # Nothing was recorded by any of them.
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{server.url}{PREFIX}/v1/history", headers={"xi-api-key": key}) as r,
    ):
        assert (await r.json())["history"] == []


async def test_history_needs_a_key(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        for method, path in (("GET", "/v1/history"), ("POST", "/v1/history/download")):
            async with s.request(method, f"{server.url}{PREFIX}{path}") as r:
                assert r.status == 401
                assert (await r.json())["error"]["code"] == "unauthorized"


async def _until(predicate: Any, what: str, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_client_gone_mid_stream_leaves_no_record(
    server: RunningServer, key: str, client: AsyncElevenLabs
) -> None:
    text = " ".join(sentences()[:40])[:1900]
    before = (await client.user.subscription.get()).character_count
    headers = {"xi-api-key": key}
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{server.url}{PREFIX}/v1/text-to-speech/slt/stream?output_format=pcm_44100",
            json={"text": text},
            headers=headers,
        ) as r,
    ):
        assert r.status == 200
        item_id = r.headers["history-item-id"]
        assert await r.content.read(4096)
        r.close()  # hang up with nearly all of the audio unsent

    async def billed() -> bool:
        return (await client.user.subscription.get()).character_count == before + len(text)

    gauge = server.app[METRICS].active_streams.labels("tts_elevenlabs")

    async def finished() -> bool:
        return float(gauge._value.get()) == 0

    # Billed (the handler has seen the hang-up) and the stream wound down: nothing logged.
    await _until(billed, "the partial stream to be billed")
    await _until(finished, "the stream to end")
    assert (await client.history.list()).history == []
    with pytest.raises(ApiError) as info:
        await client.history.get(item_id)
    assert info.value.status_code == 404
