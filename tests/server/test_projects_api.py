"""``/v1/projects`` over HTTP: CRUD, versions (list, read, restore, diff), optimistic
concurrency, validation of what a timeline names, subtitle import. No audio is made here
(tests/jobs/test_export_job.py renders)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp

from fixtures_services import unique_name
from server.waiting import eventually
from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository


async def _key(server: Any, role: str = "owner") -> dict[str, str]:
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=unique_name("projects"), role=role
    )
    return dict(server.headers(key))


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, Mapping[str, str]]:
    async with http.request(method, url, **kw) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, r.headers.copy()


def _block(clip_id: str, start: float, text: str, voice: str = "slt") -> dict[str, Any]:
    return {"id": clip_id, "type": "tts", "start": start, "text": text, "voice_id": voice}


def _timeline(*clips: dict[str, Any]) -> dict[str, Any]:
    return {"tracks": [{"id": "narration", "kind": "voice", "clips": list(clips)}]}


async def _create(
    http: aiohttp.ClientSession, server: Any, headers: dict[str, str], **timeline: Any
) -> dict[str, Any]:
    body = {"name": "Episode 1", **(timeline or _timeline(_block("c1", 0.0, "Hello.")))}
    status, project, _ = await _call(
        http, "POST", f"{server.url}/v1/projects", json=body, headers=headers
    )
    assert status == 201, project
    return dict(project)


async def _upload(
    http: aiohttp.ClientSession, server: Any, headers: dict[str, str], data: bytes
) -> str:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="a.wav", content_type="audio/wav")
    status, body, _ = await _call(
        http, "POST", f"{server.url}/v1/files", data=form, headers=headers
    )
    assert status == 201, body
    return str(body["id"])


async def test_create_read_list_rename_delete(server, http) -> None:
    headers = await _key(server)
    project = await _create(http, server, headers)
    assert project["version"] == 1 and project["name"] == "Episode 1"
    track = project["tracks"][0]
    assert track["kind"] == "voice" and track["duck_db"] is None
    assert track["clips"][0] == {
        "id": "c1", "type": "tts", "start": 0.0, "text": "Hello.", "voice_id": "slt",
        "settings": {"speed": None}, "gain_db": 0.0, "fade_in": 0.0, "fade_out": 0.0,
    }  # fmt: skip
    assert project["settings"] == {"sample_rate": None, "loudness_lufs": -16.0}
    url = f"{server.url}/v1/projects/{project['id']}"
    status, got, got_headers = await _call(http, "GET", url, headers=headers)
    assert status == 200 and got == project and got_headers["ETag"] == '"1"'
    second = await _create(http, server, headers)
    status, page, _ = await _call(http, "GET", f"{server.url}/v1/projects?limit=1", headers=headers)
    assert status == 200 and [p["id"] for p in page["data"]] == [second["id"]]
    status, rest, _ = await _call(
        http, "GET", f"{server.url}/v1/projects?cursor={page['next_cursor']}", headers=headers
    )
    assert [p["id"] for p in rest["data"]] == [project["id"]] and rest["next_cursor"] is None
    status, renamed, _ = await _call(http, "PATCH", url, json={"name": "Pilot"}, headers=headers)
    assert status == 200 and renamed["name"] == "Pilot" and renamed["version"] == 1
    status, _, _ = await _call(http, "DELETE", url, headers=headers)
    assert status == 204
    status, gone, _ = await _call(http, "GET", url, headers=headers)
    assert status == 404 and gone["error"]["code"] == "not_found"


async def test_every_change_is_a_version_that_can_be_read_diffed_and_restored(server, http) -> None:
    headers = await _key(server)
    project = await _create(http, server, headers)
    url = f"{server.url}/v1/projects/{project['id']}"
    # v2: the whole timeline replaced (c1's text changed, c2 added)
    body = _timeline(_block("c1", 0.0, "Hello there."), _block("c2", 2.0, "Second line."))
    status, v2, _ = await _call(http, "PUT", url, json=body, headers=headers)
    assert status == 200 and v2["version"] == 2, v2
    # v3: one clip's start moved; v4: a clip added to the track; v5: c1 removed
    status, v3, _ = await _call(
        http, "PATCH", f"{url}/clips/c2", json={"start": 3.5}, headers=headers
    )
    assert status == 200 and v3["version"] == 3, v3
    assert v3["tracks"][0]["clips"][1]["start"] == 3.5
    new_clip = {"clip": _block("c3", 6.0, "Third.", "rms")}
    status, v4, _ = await _call(
        http, "POST", f"{url}/tracks/narration/clips", json=new_clip, headers=headers
    )
    assert status == 200 and v4["version"] == 4, v4
    status, v5, _ = await _call(http, "DELETE", f"{url}/clips/c1", headers=headers)
    assert status == 200 and [c["id"] for c in v5["tracks"][0]["clips"]] == ["c2", "c3"]

    status, page, _ = await _call(http, "GET", f"{url}/versions?limit=2", headers=headers)
    assert status == 200 and [v["version"] for v in page["data"]] == [5, 4]
    assert page["data"][0]["summary"] == "clip c1 removed"
    assert page["data"][0]["author_key_id"] is not None
    status, older, _ = await _call(
        http, "GET", f"{url}/versions?cursor={page['next_cursor']}", headers=headers
    )
    assert [v["version"] for v in older["data"]] == [3, 2, 1] and older["next_cursor"] is None
    status, first, _ = await _call(http, "GET", f"{url}/versions/1", headers=headers)
    assert status == 200 and first["timeline"]["tracks"][0]["clips"][0]["text"] == "Hello."

    status, changes, _ = await _call(http, "GET", f"{url}/diff?from=1&to=3", headers=headers)
    assert status == 200, changes
    assert [c["id"] for c in changes["clips"]["added"]] == ["c2"]
    assert changes["clips"]["removed"] == []
    (changed,) = changes["clips"]["changed"]
    assert changed["id"] == "c1"
    assert changed["changes"] == [{"field": "text", "before": "Hello.", "after": "Hello there."}]
    status, moved, _ = await _call(http, "GET", f"{url}/diff?from=2&to=3", headers=headers)
    assert moved["clips"]["changed"] == [
        {"id": "c2", "track_id": "narration",
         "changes": [{"field": "start", "before": 2.0, "after": 3.5}]}
    ]  # fmt: skip
    status, removed, _ = await _call(http, "GET", f"{url}/diff?from=4&to=5", headers=headers)
    assert [c["id"] for c in removed["clips"]["removed"]] == ["c1"]

    status, restored, _ = await _call(http, "POST", f"{url}/versions/1/restore", headers=headers)
    assert status == 200 and restored["version"] == 6
    assert restored["tracks"] == project["tracks"]
    status, same, _ = await _call(http, "GET", f"{url}/diff?from=1&to=6", headers=headers)
    assert same["clips"] == {"added": [], "removed": [], "changed": []}
    assert same["tracks"]["changed"] == [] and same["settings"] == []
    status, _, _ = await _call(http, "GET", f"{url}/versions/99", headers=headers)
    assert status == 404
    status, _, _ = await _call(http, "GET", f"{url}/diff?from=1", headers=headers)
    assert status == 422


async def test_a_change_on_a_stale_version_is_refused(server, http) -> None:
    headers = await _key(server)
    project = await _create(http, server, headers)
    url = f"{server.url}/v1/projects/{project['id']}"
    body = _timeline(_block("c1", 0.0, "Edited once."))
    status, v2, _ = await _call(http, "PUT", url, json=body, headers={**headers, "If-Match": '"1"'})
    assert status == 200 and v2["version"] == 2
    # A second editor still on version 1:
    stale = _timeline(_block("c1", 0.0, "Edited elsewhere."))
    status, err, _ = await _call(http, "PUT", url, json=stale, headers={**headers, "If-Match": "1"})
    assert status == 409 and err["error"]["code"] == "conflict", err
    assert err["error"]["details"] == {"current_version": 2, "base_version": 1}
    status, err, _ = await _call(
        http, "PUT", url, json={**stale, "base_version": 1}, headers=headers
    )
    assert status == 409
    status, err, _ = await _call(
        http, "PATCH", f"{url}/clips/c1", json={"text": "x", "base_version": 1}, headers=headers
    )
    assert status == 409
    status, now, _ = await _call(http, "GET", url, headers=headers)
    assert now["version"] == 2 and now["tracks"][0]["clips"][0]["text"] == "Edited once."
    status, v3, _ = await _call(
        http, "PUT", url, json={**stale, "base_version": 2}, headers=headers
    )
    assert status == 200 and v3["version"] == 3


async def test_bad_timelines_are_refused_and_store_nothing(server, http) -> None:
    headers = await _key(server)
    other = await _key(server)
    project = await _create(http, server, headers)
    url = f"{server.url}/v1/projects/{project['id']}"

    async def put(body: dict[str, Any]) -> tuple[int, Any]:
        status, answer, _ = await _call(http, "PUT", url, json=body, headers=headers)
        return status, answer

    status, err = await put(_timeline(_block("c1", 0.0, "Hi.", voice="no-such-voice")))
    assert status == 400 and err["error"]["code"] == "unknown_voice", err
    assert "no-such-voice" in err["error"]["message"]
    status, err = await put(_timeline(_block("c1", -1.0, "Hi.")))
    assert status == 422 and "start" in str(err["error"]["details"]), err
    status, err = await put(_timeline(_block("c1", 0.0, "x" * 5001)))
    assert status == 422
    status, err = await put(_timeline(_block("c1", 0.0, "a"), _block("c1", 1.0, "b")))
    assert status == 422 and "used twice" in err["error"]["message"]
    status, err = await put({"tracks": [{"kind": "voice"}] * 33})
    assert status == 422
    foreign = await _upload(http, server, other, b"RIFF....")
    audio = {"id": "m1", "type": "audio", "start": 0.0, "file_id": foreign}
    music = {"tracks": [{"id": "music", "kind": "music", "clips": [audio]}]}
    status, err = await put(music)
    assert status == 404 and err["error"]["code"] == "not_found", err
    status, err = await put({"video_asset": {"file_id": str(uuid.uuid4())}})
    assert status == 404
    status, err, _ = await _call(
        http, "POST", f"{url}/tracks/nope/clips", json={"clip": _block("c9", 0, "x")},
        headers=headers,
    )  # fmt: skip
    assert status == 404 and "nope" in err["error"]["message"]
    status, err, _ = await _call(
        http, "PATCH", f"{url}/clips/c1", json={"start": -2}, headers=headers
    )
    assert status == 422
    status, err, _ = await _call(
        http, "PATCH", f"{url}/clips/c1", json={"id": "x"}, headers=headers
    )
    assert status == 422
    status, now, _ = await _call(http, "GET", url, headers=headers)
    assert now["version"] == 1  # nothing was stored
    # Another workspace's project is as missing as one that never existed.
    status, err, _ = await _call(http, "GET", url, headers=other)
    assert status == 404
    status, err, _ = await _call(http, "PUT", url, json=_timeline(), headers=other)
    assert status == 404
    # An export to mp4 needs a video; an unknown format is refused before any job exists.
    status, err, _ = await _call(
        http, "POST", f"{url}/exports", json={"format": "mp4"}, headers=headers
    )
    assert status == 422 and "video" in err["error"]["message"], err
    status, err, _ = await _call(
        http, "POST", f"{url}/exports", json={"format": "mp5"}, headers=headers
    )
    assert status == 422
    status, empty, _ = await _call(
        http, "POST", f"{server.url}/v1/projects", json={"name": "empty"}, headers=headers
    )
    status, err, _ = await _call(
        http, "POST", f"{server.url}/v1/projects/{empty['id']}/exports", json={"format": "wav"},
        headers=headers,
    )  # fmt: skip
    assert status == 422 and "no clips" in err["error"]["message"], err
    # Straight through /v1/jobs the job reads the project itself: another workspace's is a
    # failed job (not found), never a render of someone else's timeline.
    body = {"type": "export", "input": {"project_id": project["id"], "format": "wav"}}
    status, job, _ = await _call(http, "POST", f"{server.url}/v1/jobs", json=body, headers=other)
    assert status == 202, job

    async def ended() -> dict[str, Any] | None:
        _, now, _ = await _call(http, "GET", f"{server.url}/v1/jobs/{job['id']}", headers=other)
        return now if now["status"] in ("completed", "failed") else None

    failed = await eventually(ended, within=20, what="the export job ended")
    assert failed["status"] == "failed" and failed["error"]["code"] == "not_found", failed


SRT = """1
00:00:01,000 --> 00:00:02,500
Welcome to the show.

2
00:00:04,200 --> 00:00:05,000
<i>Thanks</i> for listening.
"""

VTT = """WEBVTT

00:00.500 --> 00:01.500
First cue.

intro
00:02.000 --> 00:03.000
<v Ann>Second cue.
"""


async def test_subtitles_become_tts_blocks_at_their_cues(server, http) -> None:
    headers = await _key(server)
    project = await _create(http, server, headers)
    url = f"{server.url}/v1/projects/{project['id']}/subtitles"
    status, v2, _ = await _call(
        http, "POST", f"{url}?voice_id=slt&track_id=narration", data=SRT.encode(),
        headers={**headers, "Content-Type": "application/x-subrip"},
    )  # fmt: skip
    assert status == 200 and v2["version"] == 2, v2
    clips = v2["tracks"][0]["clips"]
    assert [(c["start"], c["text"], c["voice_id"]) for c in clips[1:]] == [
        (1.0, "Welcome to the show.", "slt"),
        (4.2, "<i>Thanks</i> for listening.", "slt"),
    ]
    form = aiohttp.FormData()
    form.add_field("file", VTT.encode(), filename="cues.vtt", content_type="text/vtt")
    form.add_field("voice_id", "rms")
    status, v3, _ = await _call(http, "POST", url, data=form, headers=headers)
    assert status == 200 and v3["version"] == 3, v3
    (added,) = [t for t in v3["tracks"] if t["id"] != "narration"]
    assert added["kind"] == "voice"
    assert [(c["start"], c["text"]) for c in added["clips"]] == [
        (0.5, "First cue."),
        (2.0, "Second cue."),
    ]
    broken = SRT.replace("00:00:04,200 --> 00:00:05,000", "00:00:04,200 -> 00:00:05")
    status, err, _ = await _call(
        http, "POST", f"{url}?voice_id=slt", data=broken.encode(), headers=headers
    )
    assert status == 422 and err["error"]["message"].startswith("line 6:"), err
    assert err["error"]["details"]["line"] == 6
    status, err, _ = await _call(
        http, "POST", f"{url}?voice_id=nobody", data=SRT.encode(), headers=headers
    )
    assert status == 400 and err["error"]["code"] == "unknown_voice"
    status, err, _ = await _call(http, "POST", url, data=SRT.encode(), headers=headers)
    assert status == 422  # no voice_id
    status, now, _ = await _call(
        http, "GET", f"{server.url}/v1/projects/{project['id']}", headers=headers
    )
    assert now["version"] == 3
