"""A small local fake of an OpenAI-compatible chat-completions endpoint, for the official SDK.

An aiohttp server on 127.0.0.1 (ephemeral port) answering ``POST /v1/chat/completions``, streamed
(``stream: true``: server-sent events of ``chat.completion.chunk`` objects, then ``[DONE]``) or
not. Replies are scripted per test and played in order: text (split into several deltas), a
tool call (its arguments split across deltas, as real servers do), an HTTP error, or an error
event in the middle of a stream. With no script left it echoes the user, or, after a tool
result, answers with that result's first passage, so tool rounds need no scripting.

Every request body and its headers are kept in ``requests`` for the test to inspect.

``POST /v1/moderations`` scores each input by the rules given with ``flag`` (a word found in
the input gives its category that score; every other category scores 0.01), and answers 500
while ``moderation_failures`` is above zero. Its requests are kept in ``moderation_requests``.

    async with FakeOpenAI() as fake:
        fake.reply_tool_call("search_knowledge", {"query": "opening hours"})
        agent = OpenAIChatAgent(kb, server_llm=LLMSettings(fake.base_url, "fake-model"))
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeOpenAI", "Reply"]


@dataclass
class Reply:
    kind: str  # "text" | "tool_call" | "error" | "stream_error"
    text: str = ""
    tool_name: str = ""
    tool_args: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    delay_s: float = 0.0  # between chunks


@dataclass
class Seen:
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.body.get("messages", [])
        return messages


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._script: deque[Reply] = deque()
        self._answer: Callable[[dict[str, Any]], str] | None = None
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.moderation_requests: list[dict[str, Any]] = []
        self._flags: list[tuple[str, str, float]] = []
        self.moderation_failures = 0

    # -- scripting -------------------------------------------------------------------------

    def reply_text(self, text: str, *, delay_s: float = 0.0) -> None:
        self._script.append(Reply("text", text=text, delay_s=delay_s))

    def reply_tool_call(self, name: str, args: dict[str, Any]) -> None:
        self._script.append(Reply("tool_call", tool_name=name, tool_args=args))

    def answer_with(self, answer: Callable[[dict[str, Any]], str]) -> None:
        """With no script left, reply ``answer(request body)`` as text instead of the echo:
        for callers whose number of requests or lines the test cannot know beforehand."""
        self._answer = answer

    def reply_error(self, status: int, message: str = "scripted failure") -> None:
        self._script.append(Reply("error", text=message, status=status))

    def flag(self, word: str, category: str, score: float) -> None:
        """Moderation: an input containing ``word`` (case-insensitive) scores ``score`` in
        ``category``."""
        self._flags.append((word.lower(), category, score))

    def reply_stream_error(self, text_before: str, message: str = "backend crashed") -> None:
        self._script.append(Reply("stream_error", text=text_before, tool_name=message))

    # -- lifetime ----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_post("/v1/moderations", self._moderations)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the endpoint ------------------------------------------------------------------------

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Seen(body, dict(request.headers)))
        reply = self._script.popleft() if self._script else self._default(body)
        if reply.kind == "error":
            return web.json_response(
                {"error": {"message": reply.text, "type": "server_error", "code": None}},
                status=reply.status,
            )
        if not body.get("stream"):
            return web.json_response(self._whole(body, reply))
        return await self._stream(request, body, reply)

    async def _moderations(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.moderation_requests.append(body)
        if self.moderation_failures > 0:
            self.moderation_failures -= 1
            return web.json_response(
                {"error": {"message": "moderation backend down", "type": "server_error"}},
                status=500,
            )
        inputs = body.get("input")
        texts = inputs if isinstance(inputs, list) else [inputs]
        results = []
        for text in texts:
            scores = {category: 0.01 for _, category, _ in self._flags}
            for word, category, score in self._flags:
                if word in str(text).lower():
                    scores[category] = max(scores[category], score)
            flagged = {category: score >= 0.5 for category, score in scores.items()}
            results.append(
                {
                    "flagged": any(flagged.values()),
                    "categories": flagged,
                    "category_scores": scores,
                }
            )
        return web.json_response(
            {"id": f"modr-{next(self._ids)}", "model": body.get("model"), "results": results}
        )

    def _default(self, body: dict[str, Any]) -> Reply:
        if self._answer is not None:
            return Reply("text", text=self._answer(body))
        messages = body.get("messages", [])
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            try:
                passages = json.loads(last.get("content") or "{}").get("passages") or []
            except json.JSONDecodeError:
                passages = []
            if passages:
                return Reply("text", text=f"From the documents: {passages[0]['text']}")
            return Reply("text", text="The documents do not say.")
        return Reply("text", text=f"You said: {last.get('content', '')}")

    def _chunk(self, body: dict[str, Any], delta: dict[str, Any], finish: str | None) -> str:
        chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk)}\n\n"

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: Reply
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(data: str) -> None:
            await response.write(data.encode())
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)

        await send(self._chunk(body, {"role": "assistant", "content": ""}, None))
        if reply.kind == "tool_call":
            call_id = f"call_{next(self._ids)}"
            first = {
                "index": 0,
                "id": call_id,
                "type": "function",
                "function": {"name": reply.tool_name, "arguments": ""},
            }
            await send(self._chunk(body, {"tool_calls": [first]}, None))
            args = json.dumps(reply.tool_args)
            for i in range(0, len(args), 7):  # arguments arrive in fragments
                piece = {"index": 0, "function": {"arguments": args[i : i + 7]}}
                await send(self._chunk(body, {"tool_calls": [piece]}, None))
            await send(self._chunk(body, {}, "tool_calls"))
        else:
            for word in _pieces(reply.text):
                await send(self._chunk(body, {"content": word}, None))
            if reply.kind == "stream_error":
                error = {"error": {"message": reply.tool_name, "type": "server_error"}}
                await send(f"data: {json.dumps(error)}\n\n")
                await response.write_eof()
                return response
            await send(self._chunk(body, {}, "stop"))
        await send("data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _whole(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.kind == "tool_call":
            message["tool_calls"] = [
                {
                    "id": f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {
                        "name": reply.tool_name,
                        "arguments": json.dumps(reply.tool_args),
                    },
                }
            ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.kind == "tool_call" else "stop",
                }
            ],
        }


def _pieces(text: str) -> list[str]:
    """Word-sized deltas, spaces kept, so the joined deltas are exactly ``text``."""
    pieces: list[str] = []
    for i, word in enumerate(text.split(" ")):
        pieces.append(word if i == 0 else " " + word)
    return [p for p in pieces if p]
