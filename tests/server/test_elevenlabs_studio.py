"""ElevenLabs Studio projects through the official SDK on a real server, checked by content.

Each test works in a workspace of its own (a fresh key). The conversion is a real
``studio_convert`` job on the cheap flite voices; its audio is transcribed back with Whisper.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from elevenlabs import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError

from helpers import normalize
from server.idle_jobs import insert_idle_job
from server.studio_sdk import conversion_jobs, new_owner_key, sdk_client
from server.waiting import eventually
from voicestream.media.decode import decode_audio
from voicestream.media.loudness import integrated_loudness
from voicestream.rest.resources import POOL
from voicestream.store.studio import StudioStore
from voicestream.transports.elevenlabs_rest import PREFIX

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture

_HEADING = "The lighthouse keeper."
_FIRST = "Seven ships sailed at dawn."
_SECOND = "The harbour was quiet all night."
_EDITED = "The harbour was busy with boats all night."


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=120) as client:
        yield client


@pytest.fixture
async def key(server: RunningServer) -> str:
    return await new_owner_key(server, "el-studio")


@pytest.fixture
def client(server: RunningServer, key: str, http: httpx.AsyncClient) -> AsyncElevenLabs:
    return sdk_client(server, key, http)


def _node(voice: str, text: str) -> dict[str, str]:
    return {"type": "tts_node", "voice_id": voice, "text": text}


def _content(second: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "Harbour",
            "blocks": [
                {"sub_type": "h1", "nodes": [_node("slt", _HEADING)]},
                {"sub_type": "p", "nodes": [_node("slt", _FIRST), _node("rms", second)]},
            ],
        }
    ]


async def _finished(
    server: RunningServer, http: httpx.AsyncClient, key: str, count: int
) -> dict[str, Any]:
    """The newest conversion job, once ``count`` of them have all completed."""

    async def done() -> dict[str, Any] | None:
        jobs = await conversion_jobs(server, http, key)
        failed = [j for j in jobs if j["status"] in ("failed", "cancelled")]
        assert not failed, failed
        if len(jobs) == count and all(j["status"] == "completed" for j in jobs):
            return max(jobs, key=lambda j: j["created_at"])
        return None

    job: dict[str, Any] = await eventually(done, within=90, every=0.2, what="conversion")
    return job


def _loudness(mp3: bytes) -> float:
    return integrated_loudness(decode_audio(mp3, 44100), 44100)


async def _heard(client: AsyncElevenLabs, audio: bytes) -> str:
    result = await client.speech_to_text.convert(model_id="scribe_v1", file=("s.mp3", audio))
    return normalize(str(result.text))


async def test_content_json_converts_streams_and_reconverts_only_what_changed(
    server: RunningServer, client: AsyncElevenLabs, http: httpx.AsyncClient, key: str
) -> None:
    studio = client.studio.projects
    created = await studio.create(
        name="Harbour tales",
        default_title_voice_id="slt",
        default_paragraph_voice_id="rms",
        from_content_json=json.dumps(_content(_SECOND)),
        auto_convert=True,
    )
    project_id = created.project.project_id
    first = await _finished(server, http, key, 1)
    assert first["result"]["synthesized"] + first["result"]["reused"] == 3

    async def converted() -> Any:
        project = await studio.get(project_id)
        return project if project.state == "default" and project.can_be_downloaded else None

    project = await eventually(converted, within=30, what="project converted")
    assert [c.name for c in project.chapters] == ["Harbour"]
    chapter = project.chapters[0]
    assert chapter.can_be_downloaded and chapter.state == "default"
    assert set(chapter.voice_ids or []) == {"slt", "rms"}

    snapshots = (await studio.snapshots.list(project_id)).snapshots
    assert len(snapshots) == 1
    audio = b"".join(
        [c async for c in studio.snapshots.stream(project_id, snapshots[0].project_snapshot_id)]
    )
    heard = await _heard(client, audio)
    # Both voices' text is in the project's audio, in order.
    assert "ships" in heard and "dawn" in heard, heard
    assert "harbo" in heard and "night" in heard, heard
    assert heard.index("ships") < heard.index("night"), heard
    archive = b"".join(
        [
            c
            async for c in studio.snapshots.stream_archive(
                project_id, snapshots[0].project_snapshot_id
            )
        ]
    )
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        names = zipped.namelist()
        assert len(names) == 1 and names[0].endswith("Harbour.mp3")
        zipped_chapter = zipped.read(names[0])
    # The archive holds the chapter's own snapshot audio.
    (chapter_snap,) = (
        await studio.chapters.snapshots.list(project_id, chapter.chapter_id)
    ).snapshots
    chapter_audio = b"".join(
        [
            c
            async for c in studio.chapters.snapshots.stream(
                project_id, chapter.chapter_id, chapter_snap.chapter_snapshot_id
            )
        ]
    )
    assert zipped_chapter == chapter_audio and len(chapter_audio) > 10_000
    # Brought to the -16 LUFS target, like a tts job's output.
    lufs = await asyncio.to_thread(_loudness, chapter_audio)
    assert abs(lufs + 16.0) < 1.0, lufs

    # One paragraph's second voice edited: converting again synthesizes that node only.
    full = await studio.chapters.get(project_id, chapter.chapter_id)
    blocks = [
        {
            "block_id": block.block_id,
            "sub_type": "h1" if index == 0 else "p",
            "nodes": [
                _node(n.voice_id or "slt", _EDITED if n.text == _SECOND else n.text)
                for n in block.nodes
            ],
        }
        for index, block in enumerate(full.content.blocks)
    ]
    await studio.chapters.update(project_id, chapter.chapter_id, content={"blocks": blocks})
    edited = await studio.chapters.get(project_id, chapter.chapter_id)
    assert [n.text for n in edited.content.blocks[1].nodes] == [_FIRST, _EDITED]
    await studio.chapters.convert(project_id, chapter.chapter_id)
    second = await _finished(server, http, key, 2)
    assert second["result"]["synthesized"] == 1
    assert second["result"]["reused"] == 2
    chapter_snaps = (await studio.chapters.snapshots.list(project_id, chapter.chapter_id)).snapshots
    assert len(chapter_snaps) == 2  # one per conversion, newest first
    newest = chapter_snaps[0]
    got = await studio.chapters.snapshots.get(
        project_id, chapter.chapter_id, newest.chapter_snapshot_id
    )
    assert got.chapter_id == chapter.chapter_id
    audio = b"".join(
        [
            c
            async for c in studio.chapters.snapshots.stream(
                project_id, chapter.chapter_id, newest.chapter_snapshot_id
            )
        ]
    )
    heard = await _heard(client, audio)
    assert "boat" in heard and "quiet" not in heard, heard

    # Deleting the project deletes its snapshots' audio files.
    file_ids = [f["id"] for job in (first, second) for f in job["result"]["files"]]
    await studio.delete(project_id)
    for file_id in file_ids:
        r = await http.get(
            f"{server.url}/v1/files/{file_id}", headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 404, r.text
    with pytest.raises(ApiError) as missing:
        await studio.get(project_id)
    assert missing.value.status_code == 404


async def _queued_job(server: RunningServer, project_id: str, chapter_id: str) -> None:
    """A conversion job no worker runs (its type is not one): the chapter stays in it."""
    async with server.app[POOL].acquire() as conn, conn.transaction():
        workspace_id = await conn.fetchval(
            "SELECT workspace_id FROM studio_projects WHERE id = $1", project_id
        )
        job = await insert_idle_job(conn, workspace_id, "test.never_runs")
        await StudioStore.mark_converting(
            conn, project_id, [chapter_id], job.id, whole_project=False
        )


async def test_a_document_becomes_chapters_of_headings_and_paragraphs(
    server: RunningServer, client: AsyncElevenLabs
) -> None:
    markdown = b"# Arrival\n\nThe train was late.\n\n# Departure\n\nWe left at noon.\n"
    created = await client.studio.projects.create(
        name="Two chapters",
        default_title_voice_id="awb",
        default_paragraph_voice_id="slt",
        from_document=("story.md", markdown, "text/markdown"),
    )
    project = await client.studio.projects.get(created.project.project_id)
    assert [c.name for c in project.chapters] == ["Arrival", "Departure"]
    assert project.state == "default" and not project.can_be_downloaded
    chapter = await client.studio.projects.chapters.get(
        project.project_id, project.chapters[1].chapter_id
    )
    nodes = [(b.nodes[0].voice_id, b.nodes[0].text) for b in chapter.content.blocks]
    assert nodes == [("awb", "Departure"), ("slt", "We left at noon.")]
    # While its conversion job waits, the chapter and its project say they are converting.
    await _queued_job(server, project.project_id, chapter.chapter_id)
    busy = await client.studio.projects.get(project.project_id)
    assert busy.state == "converting"
    assert [c.state for c in busy.chapters] == ["default", "converting"]
    listed = await client.studio.projects.list()
    assert [p.project_id for p in listed.projects] == [project.project_id]
    added = await client.studio.projects.chapters.create(project.project_id, name="Epilogue")
    chapters = await client.studio.projects.chapters.list(project.project_id)
    assert [c.name for c in chapters.chapters] == ["Arrival", "Departure", "Epilogue"]
    assert added.chapter.content.blocks == []
    await client.studio.projects.chapters.delete(project.project_id, added.chapter.chapter_id)
    updated = await client.studio.projects.update(
        project.project_id,
        name="Renamed",
        default_title_voice_id="slt",
        default_paragraph_voice_id="rms",
    )
    assert updated.project.name == "Renamed"
    assert updated.project.default_paragraph_voice_id == "rms"

    # A web page: its headings make the chapters, its markup is not read aloud.
    page = (
        b"<html><head><title>Skip</title><style>p {}</style></head><body>"
        b"<h2>Morning</h2><p>Tea &amp; toast.</p><h2>Evening</h2><p>Soup.</p></body></html>"
    )
    created = await client.studio.projects.create(
        name="Page", from_document=("page.html", page, "text/html")
    )
    project = await client.studio.projects.get(created.project.project_id)
    assert [c.name for c in project.chapters] == ["Morning", "Evening"]
    chapter = await client.studio.projects.chapters.get(
        project.project_id, project.chapters[0].chapter_id
    )
    assert [b.nodes[0].text for b in chapter.content.blocks] == ["Morning", "Tea & toast."]


async def _post(
    http: httpx.AsyncClient, url: str, key: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    r = await http.post(url, headers={"xi-api-key": key}, **kwargs)
    return r.status_code, r.json()


async def test_bad_inputs_are_elevenlabs_errors_and_write_nothing(
    server: RunningServer, http: httpx.AsyncClient, key: str
) -> None:
    url = f"{server.url}{PREFIX}/v1/studio/projects"
    headers = {"xi-api-key": key}
    bad_forms = {
        "default_title_voice_id": {"name": "x", "default_title_voice_id": "nobody"},
        "from_content_json": {"name": "x", "from_content_json": "[{not json"},
        "from_content_json.0.blocks.0.nodes.0.voice_id": {
            "name": "x",
            "from_content_json": json.dumps(
                [{"name": "c", "blocks": [{"nodes": [_node("nobody", "Hi.")]}]}]
            ),
        },
        "from_content_json.0.blocks.0.nodes.0.text": {
            "name": "x",
            "from_content_json": json.dumps(
                [{"name": "c", "blocks": [{"nodes": [{"voice_id": "slt"}]}]}]
            ),
        },
        "name": {"name": ""},
    }
    for field, form in bad_forms.items():
        files = {k: (None, v) for k, v in form.items()}
        status, body = await _post(http, url, key, files=files)
        assert status == 422, (field, body)
        assert ["body", *field.split(".")] in [d["loc"] for d in body["detail"]], (field, body)
    status, body = await _post(
        http, url, key, files={"name": (None, "x"), "from_url": (None, "https://example.com")}
    )
    assert status == 400 and "from_url" in body["detail"]["message"], body
    listed = await http.get(url, headers=headers)
    assert listed.json() == {"projects": []}

    # A blank project: nothing to convert is a 422, and the project stays as it was.
    status, body = await _post(http, url, key, files={"name": (None, "blank")})
    assert status == 200, body
    project_id = body["project"]["project_id"]
    status, body = await _post(http, f"{url}/{project_id}/convert", key)
    assert status == 422, body
    status, body = await _post(http, f"{url}/{project_id}/chapters", key, json={"name": "c"})
    assert status == 200, body
    chapter_url = f"{url}/{project_id}/chapters/{body['chapter']['chapter_id']}"
    bad = {"content": {"blocks": [{"sub_type": "p", "nodes": [_node("nobody", "Hi.")]}]}}
    status, body = await _post(http, chapter_url, key, json=bad)
    assert status == 422, body
    assert ["body", "content", "blocks", "0", "nodes", "0", "voice_id"] in [
        d["loc"] for d in body["detail"]
    ]
    status, body = await _post(
        http, f"{url}/{project_id}/chapters", key, json={"name": "c", "from_url": "http://x"}
    )
    assert status == 400, body
    chapter = (await http.get(chapter_url, headers=headers)).json()
    assert chapter["content"] == {"blocks": []}
    assert (
        len((await http.get(f"{url}/{project_id}/chapters", headers=headers)).json()["chapters"])
        == 1
    )

    # Another workspace's project is exactly as missing as one that never was.
    other = await new_owner_key(server, "el-studio")
    missing = await http.get(f"{url}/0123456789abcdef0123", headers=headers)
    theirs = await http.get(f"{url}/{project_id}", headers={"xi-api-key": other})
    assert missing.status_code == theirs.status_code == 404
    assert theirs.json()["detail"]["status"] == missing.json()["detail"]["status"]
    for path in ("/convert", "/snapshots", "/chapters"):
        r = await http.request(
            "POST" if path == "/convert" else "GET",
            f"{url}/{project_id}{path}",
            headers={"xi-api-key": other},
        )
        assert r.status_code == 404, (path, r.text)
    r = await http.delete(f"{url}/{project_id}", headers={"xi-api-key": other})
    assert r.status_code == 404
    assert (await http.get(f"{url}/{project_id}", headers=headers)).status_code == 200
