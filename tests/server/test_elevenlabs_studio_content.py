"""ElevenLabs Studio, what happens to a project's content over time, through the official SDK:
its content replaced (``studio.projects.content.update``), a chapter edited after its
conversion, a conversion that failed, and a conversion whose chapter or project went away
while it ran. The conversions are real ``studio_convert`` jobs on the cheap flite voices.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from elevenlabs import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError

from server.studio_sdk import conversion_jobs, new_owner_key, sdk_client
from server.waiting import eventually
from voicestream.rest.jobs import JOBS
from voicestream.rest.resources import POOL
from voicestream.store import db
from voicestream.store.jobs import JobRecord
from voicestream.store.studio import StudioStore

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture

_DAWN = "Seven ships sailed at dawn."
_NIGHT = "The harbour was quiet all night."
_BOATS = "Boats came home."


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=120) as client:
        yield client


@pytest.fixture
async def key(server: RunningServer) -> str:
    return await new_owner_key(server, "el-studio-content")


@pytest.fixture
def client(server: RunningServer, key: str, http: httpx.AsyncClient) -> AsyncElevenLabs:
    return sdk_client(server, key, http)


def _node(text: str, voice: str = "slt") -> dict[str, str]:
    return {"type": "tts_node", "voice_id": voice, "text": text}


def _chapter(name: str, *texts: str) -> dict[str, Any]:
    return {"name": name, "blocks": [{"sub_type": "p", "nodes": [_node(t)]} for t in texts]}


async def _finished(
    server: RunningServer, http: httpx.AsyncClient, key: str, count: int, status: str = "completed"
) -> dict[str, Any]:
    """The newest conversion job, once ``count`` of them have all ended."""

    async def done() -> dict[str, Any] | None:
        jobs = await conversion_jobs(server, http, key)
        if len(jobs) == count and all(j["status"] in ("completed", "failed") for j in jobs):
            return max(jobs, key=lambda j: j["created_at"])
        return None

    job: dict[str, Any] = await eventually(done, within=90, every=0.2, what="conversion")
    assert job["status"] == status, job
    return job


async def _file_status(
    server: RunningServer, http: httpx.AsyncClient, key: str, file_id: str
) -> int:
    r = await http.get(
        f"{server.url}/v1/files/{file_id}", headers={"Authorization": f"Bearer {key}"}
    )
    return r.status_code


async def _workspace_of(server: RunningServer, project_id: str) -> uuid.UUID:
    workspace_id: uuid.UUID = await server.app[POOL].fetchval(
        "SELECT workspace_id FROM studio_projects WHERE id = $1", project_id
    )
    return workspace_id


async def test_content_update_replaces_the_chapters_and_an_edit_unconverts_a_paragraph(
    server: RunningServer, client: AsyncElevenLabs, http: httpx.AsyncClient, key: str
) -> None:
    studio = client.studio.projects
    created = await studio.create(
        name="Harbour",
        default_title_voice_id="slt",
        default_paragraph_voice_id="slt",
        from_content_json=json.dumps([_chapter("Dawn", _DAWN, _NIGHT)]),
        auto_convert=True,
    )
    project_id = created.project.project_id
    first = await _finished(server, http, key, 1)
    (chapter,) = (await studio.chapters.list(project_id)).chapters
    assert chapter.can_be_downloaded and chapter.last_conversion_error is None
    assert chapter.statistics is not None
    assert chapter.statistics.paragraphs_converted == 2
    assert chapter.statistics.characters_unconverted == 0

    # One paragraph edited: that paragraph is unconverted, the chapter's audio out of date.
    full = await studio.chapters.get(project_id, chapter.chapter_id)
    blocks = [
        {"block_id": b.block_id, "sub_type": "p", "nodes": [_node(b.nodes[0].text or "")]}
        for b in full.content.blocks
    ]
    blocks[1]["nodes"] = [_node(_BOATS)]
    await studio.chapters.update(project_id, chapter.chapter_id, content={"blocks": blocks})
    edited = await studio.chapters.get(project_id, chapter.chapter_id)
    assert not edited.can_be_downloaded
    assert edited.statistics is not None
    assert edited.statistics.paragraphs_converted == 1
    assert edited.statistics.paragraphs_unconverted == 1
    assert edited.statistics.characters_converted == len(_DAWN)
    assert edited.statistics.characters_unconverted == len(_BOATS)
    # Converted again, it is all converted.
    await studio.chapters.convert(project_id, chapter.chapter_id)
    second = await _finished(server, http, key, 2)
    again = await studio.chapters.get(project_id, chapter.chapter_id)
    assert again.can_be_downloaded and again.statistics is not None
    assert again.statistics.characters_unconverted == 0
    assert again.statistics.characters_converted == len(_DAWN) + len(_BOATS)

    # Bad content changes nothing: a URL, an unknown voice, two sources, nothing to convert.
    bad_json = json.dumps([{"name": "x", "blocks": [{"nodes": [_node("Hi.", "nobody")]}]}])
    attempts: list[dict[str, Any]] = [
        {"from_url": "https://example.com/book"},
        {"from_content_json": bad_json},
        {"from_content_json": "[{not json"},
        {
            "from_content_json": json.dumps([_chapter("x", "Hi.")]),
            "from_document": ("a.md", b"# A\n\nText.\n", "text/markdown"),
        },
        {"auto_convert": True},
    ]
    for attempt in attempts:
        with pytest.raises(ApiError) as refused:
            await studio.content.update(project_id, **attempt)
        assert refused.value.status_code in (400, 422), (attempt, refused.value.body)
    assert [c.chapter_id for c in (await studio.chapters.list(project_id)).chapters] == [
        chapter.chapter_id
    ]
    other = sdk_client(server, await new_owner_key(server, "el-studio-content"), http)
    with pytest.raises(ApiError) as theirs:
        await other.studio.projects.content.update(
            project_id, from_content_json=json.dumps([_chapter("x", "Hi.")])
        )
    assert theirs.value.status_code == 404

    # Replaced: new chapters, unconverted; the old chapter and its snapshots' audio are gone.
    old_files = [c["file_id"] for job in (first, second) for c in job["result"]["chapters"]]
    replaced = await studio.content.update(
        project_id,
        from_content_json=json.dumps([_chapter("Noon", _BOATS), _chapter("Dusk", _NIGHT)]),
    )
    assert replaced.project.project_id == project_id
    chapters = (await studio.chapters.list(project_id)).chapters
    assert [c.name for c in chapters] == ["Noon", "Dusk"]
    assert not any(c.can_be_downloaded for c in chapters)
    with pytest.raises(ApiError) as gone:
        await studio.chapters.get(project_id, chapter.chapter_id)
    assert gone.value.status_code == 404
    for file_id in old_files:
        assert await _file_status(server, http, key, file_id) == 404

    # From a document, in the project's default voices, converted in the same request.
    markdown = b"# Arrival\n\nThe train was late.\n"
    await studio.content.update(
        project_id, from_document=("story.md", markdown, "text/markdown"), auto_convert=True
    )
    await _finished(server, http, key, 3)

    async def converted() -> Any:
        listed = (await studio.chapters.list(project_id)).chapters
        return listed if listed and all(c.can_be_downloaded for c in listed) else None

    (arrival,) = await eventually(converted, within=30, what="document converted")
    assert arrival.name == "Arrival" and arrival.state == "default"
    content = (await studio.chapters.get(project_id, arrival.chapter_id)).content
    assert [n.text for b in content.blocks for n in b.nodes] == ["Arrival", "The train was late."]


async def _submit_conversion(
    server: RunningServer,
    workspace_id: uuid.UUID,
    project_id: str,
    chapters: list[dict[str, Any]],
    *,
    whole: bool,
) -> uuid.UUID:
    """A conversion submitted as the routes do, with an input they would not have made (a voice
    that is gone, a chapter that is not the project's)."""
    job_input = {
        "project_id": project_id,
        "project_name": "p",
        "whole_project": whole,
        "chapters": chapters,
    }
    known = [c["chapter_id"] for c in chapters]

    async def mark(conn: db.Connection, job: JobRecord) -> None:
        await StudioStore.mark_converting(conn, project_id, known, job.id, whole_project=whole)

    submission = await server.app[JOBS].submit(
        workspace_id, "studio_convert", job_input, with_job=mark
    )
    job_id: uuid.UUID = submission.job.id
    return job_id


async def test_a_failed_conversion_shows_its_error_until_a_conversion_succeeds(
    server: RunningServer, client: AsyncElevenLabs, http: httpx.AsyncClient, key: str
) -> None:
    studio = client.studio.projects
    created = await studio.create(
        name="Failing",
        default_paragraph_voice_id="slt",
        from_content_json=json.dumps([_chapter("One", _DAWN)]),
    )
    project_id = created.project.project_id
    (chapter,) = (await studio.chapters.list(project_id)).chapters
    blocks = [{"sub_type": "p", "nodes": [_node(_DAWN, "no-such-voice")]}]
    await _submit_conversion(
        server,
        await _workspace_of(server, project_id),
        project_id,
        [{"chapter_id": chapter.chapter_id, "name": "One", "blocks": blocks}],
        whole=False,
    )
    failed = await _finished(server, http, key, 1, status="failed")
    failed_chapter = await studio.chapters.get(project_id, chapter.chapter_id)
    assert failed_chapter.state == "default"
    assert failed_chapter.last_conversion_error == failed["error"]["message"]
    assert "no-such-voice" in (failed_chapter.last_conversion_error or "")
    assert not failed_chapter.can_be_downloaded
    assert (await studio.get(project_id)).state == "default"

    await studio.chapters.convert(project_id, chapter.chapter_id)
    await _finished(server, http, key, 2)
    fixed = await studio.chapters.get(project_id, chapter.chapter_id)
    assert fixed.last_conversion_error is None and fixed.can_be_downloaded


async def test_a_conversion_keeps_no_audio_for_a_chapter_or_project_deleted_meanwhile(
    server: RunningServer, client: AsyncElevenLabs, http: httpx.AsyncClient, key: str
) -> None:
    studio = client.studio.projects
    created = await studio.create(
        name="Vanishing",
        default_paragraph_voice_id="slt",
        from_content_json=json.dumps([_chapter("Kept", _DAWN)]),
    )
    project_id = created.project.project_id
    (chapter,) = (await studio.chapters.list(project_id)).chapters
    workspace_id = await _workspace_of(server, project_id)
    blocks = [{"sub_type": "p", "nodes": [_node(_BOATS)]}]
    # A chapter deleted while the job ran: its audio is made, then not kept.
    job_id = await _submit_conversion(
        server,
        workspace_id,
        project_id,
        [
            {"chapter_id": chapter.chapter_id, "name": "Kept", "blocks": blocks},
            {"chapter_id": "deleted0chapter0000", "name": "Gone", "blocks": blocks},
        ],
        whole=True,
    )
    job = await _finished(server, http, key, 1)
    saved = await server.app[POOL].fetch("SELECT id FROM files WHERE job_id = $1", job_id)
    kept = {f["id"] for f in job["result"]["files"]}
    assert {str(row["id"]) for row in saved} == kept and len(kept) == 2, (saved, job)
    assert [c["snapshot_id"] is not None for c in job["result"]["chapters"]] == [True, False]

    # The project deleted before the job ran: it makes nothing.
    await studio.delete(project_id)
    job_id = await _submit_conversion(
        server,
        workspace_id,
        project_id,
        [{"chapter_id": chapter.chapter_id, "name": "Kept", "blocks": blocks}],
        whole=True,
    )
    job = await _finished(server, http, key, 2)
    assert job["result"]["files"] == [] and job["result"]["project_deleted"], job
    saved = await server.app[POOL].fetch("SELECT id FROM files WHERE job_id = $1", job_id)
    assert saved == []
