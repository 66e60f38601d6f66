"""What a job reserves at submission follows the file it names (issue 10 §6): a transcription
reserves its recording's duration (probed from the stored object's header), a document tts
job its characters, instead of a flat hour or 10,000 characters; a file submission cannot
look at (unknown, or another workspace's) keeps the flat figure and the job fails on it.

The jobs are small (seconds of silence, two short chapters in flite) and left to run: only
the reservation, written with the job, is looked at.
"""

from __future__ import annotations

import io
import uuid
import wave
from typing import Any

import aiohttp

from helpers import StartedServer
from voicestream.billing.prices import transcription_credits, tts_credits
from voicestream.jobs.types.transcription import ESTIMATE_SECONDS
from voicestream.jobs.types.tts import DOCUMENT_ESTIMATE_CHARACTERS
from voicestream.media.documents import parse_document

BOUNDARY = "vs-estimate-boundary"
RATE = 16000


def _wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(2 * int(seconds * RATE)))
    return out.getvalue()


async def _upload(
    http: aiohttp.ClientSession, server: StartedServer, data: bytes, name: str, ctype: str
) -> str:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    headers = {**server.headers(), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    async with http.post(f"{server.url}/v1/files", data=body, headers=headers) as r:
        got = await r.json()
        assert r.status == 201, got
        return str(got["id"])


async def _reserved(
    http: aiohttp.ClientSession, server: StartedServer, job_type: str, job_input: dict[str, Any]
) -> int:
    """Submit a job and return what its submission reserved (written with the job)."""
    body = {"type": job_type, "input": job_input}
    async with http.post(f"{server.url}/v1/jobs", json=body, headers=server.headers()) as r:
        job = await r.json()
        assert r.status == 202, job
    params = {"limit": "200"}
    while True:
        async with http.get(
            f"{server.url}/v1/credits", params=params, headers=server.headers()
        ) as r:
            page = await r.json()
            assert r.status == 200, page
        for t in page["transactions"]:
            if t["job_id"] == job["id"] and t["type"] == "reserve":
                return sum(e["amount"] for e in t["entries"] if e["account"] == "reserved")
        assert page["next_cursor"], f"no reservation for job {job['id']}"
        params["cursor"] = page["next_cursor"]


async def test_a_transcription_reserves_its_recording_s_duration(
    http: aiohttp.ClientSession, server: StartedServer
) -> None:
    file_id = await _upload(http, server, _wav(7.25), "call.wav", "audio/wav")
    reserved = await _reserved(http, server, "transcription", {"file_id": file_id})
    assert reserved == transcription_credits(7.25) != transcription_credits(ESTIMATE_SECONDS)


async def test_a_document_tts_job_reserves_its_characters(
    http: aiohttp.ClientSession, server: StartedServer
) -> None:
    text = b"# One\n\nA short chapter.\n\n# Two\n\nAnd a second, shorter one.\n"
    file_id = await _upload(http, server, text, "book.md", "text/markdown")
    reserved = await _reserved(http, server, "tts", {"file_id": file_id, "voice": "slt"})
    characters = parse_document(text, "text/markdown", "book.md").characters
    assert reserved == tts_credits(characters) < tts_credits(DOCUMENT_ESTIMATE_CHARACTERS)


async def test_a_file_submission_cannot_see_keeps_the_flat_estimate(
    http: aiohttp.ClientSession, server: StartedServer
) -> None:
    missing = {"file_id": str(uuid.uuid4())}
    assert await _reserved(http, server, "transcription", missing) == transcription_credits(
        ESTIMATE_SECONDS
    )
