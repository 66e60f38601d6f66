"""ElevenLabs dubbing (``/elevenlabs/v1/dubbing``) through the official SDK on the session's
server: a video the test makes (its speech from the server's own voice) dubbed end to end
and checked by content — the video stream copied bit for bit, the dubbed speech heard back by
Whisper, where each segment's dubbed speech starts, the subtitles' times — re-voiced in
English, into German from a supplied CSV, and into Spanish through the workspace's own
translator (a local fake of an OpenAI-compatible endpoint); and every other route on a dub
stored directly.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from elevenlabs import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError

from fakes.openai_server import FakeOpenAI
from fixtures_services import unique_name
from helpers import corpus_wer
from server.dub_media import OUTPUT_BYTES, RATE, spoken_mp4, stored_dub
from server.waiting import eventually
from speech_onsets import speech_starts
from voicestream.dubbing.languages import voices_for
from voicestream.media.chunked_decode import ChunkedDecoder
from voicestream.media.muxing import probe, video_packets
from voicestream.media.subtitles import parse_srt
from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository
from voicestream.transports.elevenlabs_rest import PREFIX

Server = Any
TEXT = "Good morning. The garden is open today."
LEAD_S = 0.5
DUB_WITHIN_S = 150.0
ONSET_WITHIN_S = 0.15  # the bound: dubbed speech starts this close to its segment's
ONSET_DBFS = -40.0


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=120) as client:
        yield client


@pytest.fixture
async def owner(server: Server) -> tuple[uuid.UUID, str]:
    key, secret = await ApiKeyRepository(server.app[POOL]).create(
        workspace=unique_name("el-dubbing"), role="owner"
    )
    return key.workspace_id, secret


@pytest.fixture
def client(
    server: Server, owner: tuple[uuid.UUID, str], http: httpx.AsyncClient
) -> AsyncElevenLabs:
    return AsyncElevenLabs(base_url=f"{server.url}{PREFIX}", api_key=owner[1], httpx_client=http)


@pytest.fixture(scope="module")
async def source(registry: Any) -> bytes:
    return await asyncio.to_thread(spoken_mp4, registry, TEXT, lead=LEAD_S)


async def _dubbed(client: AsyncElevenLabs, dubbing_id: str) -> Any:
    async def done() -> Any:
        meta = await client.dubbing.get(dubbing_id)
        assert meta.status != "failed", meta.error
        return meta if meta.status == "dubbed" else None

    return await eventually(done, within=DUB_WITHIN_S, every=0.5, what="the dub to be dubbed")


def _packets(data: bytes) -> list[bytes]:
    with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
        file.write(data)
        file.flush()
        return video_packets(Path(file.name))


def _speech_starts(data: bytes, segments: list[Any]) -> list[float | None]:
    """Blocking: where speech starts in ``data``'s first audio track (an mp4's dubbed one) near
    each segment: from 0.3 s before its start, but not before the previous segment ends."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
        file.write(data)
        file.flush()
        with open(file.name, "rb") as media:
            decoder = ChunkedDecoder(media, RATE)
            try:
                pcm = decoder.read(600.0)
            finally:
                decoder.close()
    spans, previous_end = [], 0.0
    for segment in segments:
        spans.append((max(segment.start_time - 0.3, previous_end), segment.end_time))
        previous_end = segment.end_time
    return speech_starts(pcm, RATE, spans, threshold_dbfs=ONSET_DBFS)


async def _job(server: Server, key: str, job_id: str) -> dict[str, Any]:
    """The native API's view of a job, once it has finished (completed)."""
    async with httpx.AsyncClient(timeout=30) as http:

        async def finished() -> dict[str, Any] | None:
            r = await http.get(f"{server.url}/v1/jobs/{job_id}", headers=server.headers(key))
            job: dict[str, Any] = r.json()
            assert job["status"] not in ("failed", "cancelled"), job
            return job if job["status"] == "completed" else None

        found: dict[str, Any] = await eventually(
            finished, within=DUB_WITHIN_S, every=0.5, what="the render job"
        )
        return found


async def test_the_sdk_dubs_a_video_in_its_own_language(
    server: Server, client: AsyncElevenLabs, owner: tuple[uuid.UUID, str], source: bytes
) -> None:
    created = await client.dubbing.create(
        file=("morning.mp4", source, "video/mp4"),
        source_lang="en",
        target_lang="en",
        name="Morning",
        # The dubbed track alone: the ducked source under it would blur where the dub starts.
        drop_background_audio=True,
    )
    assert created.dubbing_id and created.expected_duration_sec > 0
    meta = await _dubbed(client, created.dubbing_id)
    assert meta.name == "Morning" and meta.target_languages == ["en"]
    assert meta.source_language == "en" and meta.media_metadata.content_type == "video/mp4"

    dubbed = b"".join([c async for c in client.dubbing.audio.get(created.dubbing_id, "en")])
    assert await asyncio.to_thread(_packets, dubbed) == await asyncio.to_thread(_packets, source)
    resource = await client.dubbing.resource.get(created.dubbing_id)
    timeline = sorted(resource.speaker_segments.values(), key=lambda s: s.start_time)
    # Each segment's dubbed speech starts where the segment does, and where the source's does.
    starts, source_starts = await asyncio.gather(
        asyncio.to_thread(_speech_starts, dubbed, timeline),
        asyncio.to_thread(_speech_starts, source, timeline),
    )
    for segment, start, heard_at in zip(timeline, starts, source_starts, strict=True):
        assert start is not None and heard_at is not None, (segment, starts, source_starts)
        assert abs(start - segment.start_time) <= ONSET_WITHIN_S, (segment, starts)
        assert abs(start - heard_at) <= ONSET_WITHIN_S, (segment, starts, source_starts)
    heard = await client.speech_to_text.convert(
        model_id="scribe_v1", file=("dubbed.mp4", dubbed, "video/mp4")
    )
    assert corpus_wer([TEXT], [str(heard.text)]) <= 0.25, heard.text

    srt = await client.dubbing.transcript.get_transcript_for_dub(
        created.dubbing_id, "en", format_type="srt"
    )
    cues = parse_srt(str(srt))
    assert cues and abs(cues[0].start - LEAD_S) < 0.4, cues
    assert all(c.end > c.start for c in cues) and cues[-1].end <= meta.media_metadata.duration + 0.5
    assert "garden" in " ".join(c.text for c in cues).lower()

    # Dubbing Studio: one segment's text changed, a render speaks only that one again.
    segments = resource.speaker_segments
    garden = next(i for i, seg in segments.items() if "garden" in seg.text.lower())
    await client.dubbing.resource.segment.update(
        created.dubbing_id, garden, "en", text="The garden is closed today."
    )
    render = await client.dubbing.resource.render(created.dubbing_id, "en", render_type="mp4")
    job = await _job(server, owner[1], render.render_id)
    assert job["result"]["synthesized"] == 1, job["result"]
    assert job["result"]["reused"] == len(segments) - 1, job["result"]
    dubbed = b"".join([c async for c in client.dubbing.audio.get(created.dubbing_id, "en")])
    heard = await client.speech_to_text.convert(
        model_id="scribe_v1", file=("dubbed.mp4", dubbed, "video/mp4")
    )
    assert "closed" in str(heard.text).lower(), heard.text

    # Deleting the dub deletes every file it had: its source and both renders' outputs.
    pool = server.app[POOL]
    count = "SELECT count(*) FROM files WHERE workspace_id = $1"
    assert await pool.fetchval(count, owner[0]) == 3
    assert (await client.dubbing.delete(created.dubbing_id)).status == "ok"
    assert await pool.fetchval(count, owner[0]) == 0


CSV = (
    "speaker,start_time,end_time,transcription,translation\n"
    "0,00:00:00.500,00:00:01.400,Good morning.,Guten Morgen.\n"
    "0,00:00:01.500,00:00:03.500,The garden is open today.,Der Garten ist heute offen.\n"
)


async def test_the_sdk_dubs_into_german_from_a_supplied_csv(
    client: AsyncElevenLabs, source: bytes, registry: Any
) -> None:
    assert voices_for(registry, "de"), "a voice that speaks German is installed"
    created = await client.dubbing.create(
        file=("morning.mp4", source, "video/mp4"),
        csv_file=("lines.csv", CSV.encode(), "text/csv"),
        source_lang="en",
        target_lang="de",
    )
    await _dubbed(client, created.dubbing_id)
    found = await client.dubbing.transcripts.get(created.dubbing_id, "de", "srt")
    assert "Guten Morgen." in str(found.srt) and "Der Garten ist heute offen." in str(found.srt)
    dubbed = b"".join([c async for c in client.dubbing.audio.get(created.dubbing_id, "de")])
    with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
        file.write(dubbed)
        file.flush()
        info = await asyncio.to_thread(probe, Path(file.name))
    assert info.has_video and info.has_audio


SPANISH = ("Buenos días.", "El jardín está abierto hoy.", "Hasta mañana.", "Muchas gracias.")
TRANSLATION_KEY = "sk-workspace-translator-key"


def _spanish(body: dict[str, Any]) -> str:
    """The fake translator's answer: the numbered lines it got, as SPANISH's in turn."""
    lines = json.loads(body["messages"][-1]["content"])
    answer = {n: SPANISH[(int(n) - 1) % len(SPANISH)] for n in lines}
    return json.dumps(answer, ensure_ascii=False)


async def test_the_sdk_dubs_into_spanish_through_the_workspaces_translator(
    server: Server,
    client: AsyncElevenLabs,
    owner: tuple[uuid.UUID, str],
    http: httpx.AsyncClient,
    source: bytes,
    registry: Any,
) -> None:
    assert voices_for(registry, "es"), "a voice that speaks Spanish is installed"
    async with FakeOpenAI() as fake:
        fake.answer_with(_spanish)
        setting = await http.put(
            f"{server.url}/v1/workspaces/{owner[0]}/translation",
            json={
                "base_url": fake.base_url,
                "model": "fake-translator",
                "api_key": TRANSLATION_KEY,
            },
            headers=server.headers(owner[1]),
        )
        assert setting.status_code == 200 and setting.json()["api_key_set"], setting.text
        created = await client.dubbing.create(
            file=("morning.mp4", source, "video/mp4"),
            source_lang="en",
            target_lang="es",
            drop_background_audio=True,
        )
        await _dubbed(client, created.dubbing_id)

    # The endpoint got the source's words, for Spanish, with the workspace's key.
    assert fake.requests
    sent = [json.loads(seen.messages[-1]["content"]) for seen in fake.requests]
    assert corpus_wer([TEXT], [" ".join(v for lines in sent for v in lines.values())]) <= 0.25
    assert all("(es)" in seen.messages[0]["content"] for seen in fake.requests)
    for seen in fake.requests:
        headers = {name.lower(): value for name, value in seen.headers.items()}
        assert headers["authorization"] == f"Bearer {TRANSLATION_KEY}"

    # Its translation is what the dub says, in the Spanish subtitles at the segments' times.
    resource = await client.dubbing.resource.get(created.dubbing_id)
    timeline = sorted(resource.speaker_segments.values(), key=lambda s: s.start_time)
    expected = [SPANISH[i % len(SPANISH)] for i in range(len(timeline))]
    assert [segment.dubs["es"].text for segment in timeline] == expected
    srt = await client.dubbing.transcript.get_transcript_for_dub(
        created.dubbing_id, "es", format_type="srt"
    )
    cues = parse_srt(str(srt))
    assert " ".join(c.text for c in cues) == " ".join(expected), cues
    for segment in timeline:
        assert min(abs(c.start - segment.start_time) for c in cues) < 0.3, (segment, cues)
    first, last = timeline[0].start_time, timeline[-1].end_time
    assert all(first - 0.3 <= c.start < c.end <= last + 1.0 for c in cues), cues
    dubbed = b"".join([c async for c in client.dubbing.audio.get(created.dubbing_id, "es")])
    starts = await asyncio.to_thread(_speech_starts, dubbed, timeline)
    assert all(
        s is not None and abs(s - seg.start_time) <= ONSET_WITHIN_S
        for s, seg in zip(starts, timeline, strict=True)
    ), (timeline, starts)


async def test_the_sdk_reads_edits_and_deletes_a_dub(
    server: Server, client: AsyncElevenLabs, owner: tuple[uuid.UUID, str]
) -> None:
    dub_id = await stored_dub(server, owner[0])
    meta = await client.dubbing.get(dub_id)
    assert meta.status == "dubbed" and meta.target_languages == ["en"]
    page = await client.dubbing.list(page_size=10)
    assert [d.dubbing_id for d in page.dubs] == [dub_id] and page.has_more is False
    assert (await client.dubbing.list(dubbing_status="dubbing")).dubs == []
    assert len((await client.dubbing.list(dubbing_status="dubbed")).dubs) == 1

    audio = b"".join([c async for c in client.dubbing.audio.get(dub_id, "en")])
    assert audio == OUTPUT_BYTES
    srt = await client.dubbing.transcript.get_transcript_for_dub(dub_id, "en")
    assert "00:00:00,500 --> 00:00:01,500" in str(srt)
    vtt = await client.dubbing.transcripts.get(dub_id, "en", "webvtt")
    assert vtt.transcript_format == "webvtt" and str(vtt.webvtt).startswith("WEBVTT")

    resource = await client.dubbing.resource.get(dub_id)
    assert resource.source_language == "en" and resource.target_languages == ["en"]
    assert list(resource.speaker_segments) == ["seg_0000", "seg_0001"]
    assert resource.speaker_tracks["speaker_0"].segments == ["seg_0000", "seg_0001"]
    assert resource.renders["en"].status == "complete"
    version = resource.version

    changed = await client.dubbing.resource.segment.update(
        dub_id, "seg_0001", "en", text="The park is closed."
    )
    assert changed.version == version + 1
    again = await client.dubbing.resource.get(dub_id)
    # Same-language: the source text itself is what the segment says.
    assert again.speaker_segments["seg_0001"].text == "The park is closed."

    with pytest.raises(ApiError) as missing:
        await client.dubbing.resource.segment.update(dub_id, "seg_0042", "en", text="x")
    assert missing.value.status_code == 404
    assert "seg_0042" in missing.value.body["detail"]["message"]

    rendered = await client.dubbing.resource.render(dub_id, "en", render_type="mp4")
    assert rendered.render_id
    with pytest.raises(ApiError) as unknown:
        await client.dubbing.resource.render(dub_id, "fr", render_type="mp4")
    assert unknown.value.status_code == 422

    deleted = await client.dubbing.delete(dub_id)
    assert deleted.status == "ok"
    with pytest.raises(ApiError) as gone:
        await client.dubbing.get(dub_id)
    assert gone.value.status_code == 404
    assert gone.value.body["detail"]["status"]
