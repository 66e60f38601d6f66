"""The embedded widget in a real browser: headless Chromium talks to the running server.

Chromium's fake microphone plays a WAV of the question (synthesized by the server's own TTS),
so the whole path is real: getUserMedia → WebRTC (Opus) or the WebSocket (16 kHz PCM) →
VAD/STT → the knowledge agent → TTS → the browser playing the reply. The test reads the
widget's state from ``window.voicestreamWidget`` and checks the captions it shows.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helpers import normalize

CHROMIUM = Path("/usr/bin/chromium")
PASSAGE = "Our office is open from nine to five on weekdays."
QUESTION = "What are your opening hours?"
WAIT_S = 60.0

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")


async def create_agent(s: aiohttp.ClientSession, server: Any) -> str:
    body = {
        "name": "front desk",
        "instructions": "Answer from the knowledge base.",
        "voice": "slt",
        "first_message": "Hello, how can I help?",
        "knowledge": [PASSAGE],
        "public": True,
    }
    async with s.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r:
        assert r.status in (200, 201), await r.text()
        return str((await r.json())["id"])


@pytest.fixture(scope="module")
async def question_wav(server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The question as a 48 kHz WAV for Chromium's fake capture, which loops it: a second of
    silence before, and enough after for the agent to answer before it is asked again."""
    async with aiohttp.ClientSession() as s:
        body = {"text": QUESTION, "voice": "slt", "format": "pcm_48000"}
        async with s.post(f"{server.url}/v1/tts", json=body, headers=server.headers()) as r:
            assert r.status == 200, await r.text()
            speech = await r.read()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(bytes(48000 * 2) + speech + bytes(48000 * 2 * 8))
    path = tmp_path_factory.mktemp("widget") / "question.wav"
    await asyncio.to_thread(path.write_bytes, buf.getvalue())
    return path


@pytest.fixture(scope="module")
async def browser(question_wav: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=str(CHROMIUM),
            timeout=30_000,
            args=[
                "--no-sandbox",
                "--headless=new",
                "--disable-gpu",
                "--use-fake-ui-for-media-stream",
                # With the server pinned to 127.0.0.1, media must stay on loopback here too.
                "--allow-loopback-in-peer-connection",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={question_wav}",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def _widget(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(
        """() => { const w = window.voicestreamWidget; return {
            state: w.state, transport: w.transport, capture: w.capture, captions: w.captions,
            agentAudioMs: w.agentAudioMs, after: w.agentAudioAfterUserMs, errors: w.errors,
            timings: w.timings } }"""
    )
    return state


@pytest.mark.parametrize("mode", ["webrtc", "websocket", "fallback"])
async def test_widget_voice_conversation(server, browser, tmp_path: Path, mode: str) -> None:
    async with aiohttp.ClientSession() as s:
        agent_id = await create_agent(s, server)
    context = await browser.new_context()
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        query = f"agent_id={agent_id}"
        if mode == "websocket":
            query += "&transport=websocket"
        elif mode == "fallback":
            # WebRTC signalling is unreachable: the widget must fall back to the WebSocket.
            await page.route("**/v1/convai/webrtc/offer", lambda route: route.abort())
        await page.goto(f"{server.url}/demo?{query}", timeout=30_000)
        mic = page.locator("#voicestream-widget button.mic")
        assert await mic.get_attribute("aria-label") == "Start voice conversation"
        await mic.click(timeout=10_000)

        deadline = time.monotonic() + WAIT_S
        state = await _widget(page)
        while not _heard_the_answer(state):
            assert time.monotonic() < deadline, f"no answer within {WAIT_S} s: {state}"
            await asyncio.sleep(0.25)
            state = await _widget(page)

        assert state["transport"] == ("webrtc" if mode == "webrtc" else "websocket"), state
        assert state["state"] == "connected"
        assert await mic.get_attribute("aria-pressed") == "true"
        # The captions are on screen, in the accessible live region.
        log = page.locator("#voicestream-widget .log[role=log]")
        assert await log.get_attribute("aria-live") == "polite"
        text = await log.inner_text()
        assert "nine to five" in text.lower(), text
        await page.screenshot(path=str(tmp_path / f"widget-{mode}.png"))
        # A figure to print, not to assert: the fake microphone loops its WAV, and a later
        # final caption restarts the timing.
        t = state["timings"]
        if t.get("agentAudio") is not None and t.get("userFinal") is not None:
            print(
                f"\n{mode}: final user caption → agent audio heard "
                f"{t['agentAudio'] - t['userFinal']:.0f} ms; "
                f"captions {json.dumps([c['text'] for c in state['captions']])}"
            )
        await mic.click(timeout=10_000)  # hang up
        assert (await _widget(page))["state"] == "ended"
        assert not problems, problems
    finally:
        await context.close()


def _heard_the_answer(state: dict[str, Any]) -> bool:
    asked = set(normalize(QUESTION).split())
    heard_question = any(
        c["speaker"] == "user"
        and c["final"]
        and len(asked & set(normalize(c["text"]).split())) >= len(asked) - 1
        for c in state["captions"]
    )
    answered = any(
        c["speaker"] == "agent" and "nine" in c["text"].lower() for c in state["captions"]
    )
    return heard_question and answered and state["after"] >= 500


async def test_widget_assets_are_public_and_cacheable(server) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server.url}/widget.js") as r:
            assert r.status == 200
            assert r.content_type == "application/javascript"
            assert "max-age" in r.headers["Cache-Control"]
            etag = r.headers["ETag"]
            body = await r.read()
        assert len(body) < 16_000  # small: no framework, no build step
        assert b"http://" not in body and b"https://" not in body.replace(
            b"https://HOST", b""
        )  # no request but to the server it came from
        async with s.get(f"{server.url}/widget.js", headers={"If-None-Match": etag}) as r:
            assert r.status == 304
        async with s.get(f"{server.url}/demo?agent_id=x") as r:
            assert r.status == 200
            assert r.content_type == "text/html"
            page = await r.text()
        assert '<script src="/widget.js"' in page
