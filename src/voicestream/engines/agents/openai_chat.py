"""An agent backed by any OpenAI-compatible chat-completions endpoint, streamed, with tools.

Reached through the official ``openai`` SDK (``AsyncOpenAI(base_url=..., api_key=...)``), so
vLLM, llama.cpp's server, Ollama, LiteLLM, OpenAI itself, anything speaking the API works.
Settings come per agent (``AgentConfig.llm``) or server-wide (``VOICESTREAM_LLM_*``), the
agent's keys winning.

Tools: the agent's ``llm["tools"]`` (OpenAI function schemas) plus a built-in
``search_knowledge`` over the agent's documents. Tool-call deltas are accumulated across the
stream; when the model asks for tools, they run, their results go back as ``tool`` messages,
and the model is called again, for at most ``max_tool_rounds`` rounds. Tools other than the
built-in one run through handlers the caller passes to ``respond_with_tools`` (a transport's
client tools); a tool without a handler returns an error result to the model, which then
answers without it.

Content deltas are yielded as they arrive, so the first clause can be spoken while the model
is still writing the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from voicestream.engines.agents.base import AgentEngine, AgentRequest
from voicestream.engines.agents.retrieval import KnowledgeBase
from voicestream.errors import EngineError, EngineUnavailable, InvalidJSON, VoiceStreamError
from voicestream.protocols.json_messages import load_json
from voicestream.resilience.circuit_breakers import breaker, endpoint_name
from voicestream.resilience.client_failures import openai_endpoint_failed

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolUnionParam

__all__ = [
    "SEARCH_KNOWLEDGE_TOOL",
    "LLMSettings",
    "OpenAIChatAgent",
    "ToolHandler",
    "merge_llm_settings",
]

log = logging.getLogger(__name__)

# A tool gets the parsed JSON arguments the model sent and returns the text the model reads.
ToolHandler = Callable[[dict[str, Any]], Awaitable[str]]

SEARCH_KNOWLEDGE: Final = "search_knowledge"
SEARCH_KNOWLEDGE_TOOL: Final[dict[str, Any]] = {
    "type": "function",
    "function": {
        "name": SEARCH_KNOWLEDGE,
        "description": (
            "Search this agent's knowledge documents. Returns the most relevant passages. "
            "Use it before answering questions about facts the documents may cover."
        ),
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to look up."}},
            "required": ["query"],
        },
    },
}
_MAX_CLIENTS: Final = 32  # cached SDK clients, one per (base_url, api_key)
_MAX_TOOL_RESULT_CHARS: Final = 8000
_MEMORY_SCORE: Final = 0.35
_CONNECT_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class LLMSettings:
    base_url: str
    model: str
    api_key: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    tools: tuple[dict[str, Any], ...] = ()


def merge_llm_settings(
    agent_llm: Mapping[str, Any] | None, server: LLMSettings | None
) -> LLMSettings:
    """The agent's settings over the server's.

    Raises:
        EngineUnavailable: neither names a base_url and a model.
    """
    llm = dict(agent_llm or {})
    base_url = llm.get("base_url") or (server.base_url if server else None)
    model = llm.get("model") or (server.model if server else None)
    if not base_url or not model:
        raise EngineUnavailable(
            "no chat-completions endpoint configured: set the agent's llm.base_url and "
            "llm.model, or VOICESTREAM_LLM_BASE_URL and VOICESTREAM_LLM_MODEL"
        )
    same_endpoint = server is not None and base_url == server.base_url
    api_key = llm.get("api_key") or (server.api_key if same_endpoint and server else None)
    tools = tuple(llm.get("tools") or (server.tools if server else ()))
    return LLMSettings(
        base_url=str(base_url),
        model=str(model),
        # Never sent to another endpoint than the one it was configured for.
        api_key=api_key,
        temperature=llm.get("temperature", server.temperature if server else None),
        max_tokens=llm.get("max_tokens", server.max_tokens if server else None),
        tools=tools,
    )


def _status_error(status: int, message: str) -> EngineError:
    retryable = status in (408, 409, 429) or status >= 500
    return EngineError(
        f"chat completions endpoint answered {status}: {message}",
        retryable=retryable,
        details={"status": status},
    )


def _engine_error(exc: Exception) -> EngineError:
    """An SDK exception as our error: 408/429/5xx and transport failures are retryable."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc.status_code, _short(exc.message))
    if isinstance(exc, openai.APITimeoutError):
        return EngineError("chat completions endpoint timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return EngineError(f"chat completions endpoint unreachable: {exc}", retryable=True)
    if isinstance(exc, openai.APIError):
        # An error event inside the stream: the server failed mid-answer.
        return EngineError(f"chat completions stream failed: {_short(exc.message)}", retryable=True)
    return EngineError(f"chat completions failed: {_short(str(exc))}")


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(slots=True)
class _ToolCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": "".join(self.arguments)},
        }


class OpenAIChatAgent(AgentEngine):
    """Streams replies from a chat-completions endpoint; see the module docstring."""

    name = "openai"

    def __init__(
        self,
        knowledge: KnowledgeBase | None = None,
        *,
        server_llm: LLMSettings | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 1,
        max_tool_rounds: int = 3,
    ) -> None:
        self._kb = knowledge
        self.server_llm = server_llm
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._max_rounds = max_tool_rounds
        self._clients: OrderedDict[tuple[str, str], AsyncOpenAI] = OrderedDict()
        self._lock = asyncio.Lock()

    def respond(self, request: AgentRequest) -> AsyncIterator[str]:
        return self.respond_with_tools(request, {})

    async def respond_with_tools(
        self, request: AgentRequest, handlers: Mapping[str, ToolHandler]
    ) -> AsyncIterator[str]:
        """``respond``, with handlers for the agent's own tools (by function name).

        Raises:
            EngineError: the endpoint failed (``retryable`` for 408/429/5xx and timeouts).
            EngineUnavailable: no endpoint is configured for this agent.
        """
        settings = merge_llm_settings(request.agent.llm, self.server_llm)
        client = await self._client(settings)
        messages = await self._messages(request)
        tools, runners = self._tools(request, settings, handlers)
        for round_no in range(self._max_rounds + 1):
            # The last round offers no tools, so the model has to answer in words.
            offer = tools if round_no < self._max_rounds else []
            calls: dict[int, _ToolCall] = {}
            content: list[str] = []
            # aclosing: when our consumer stops early (barge-in), the HTTP stream closes now,
            # not whenever the garbage collector finalizes the inner generator.
            items = self._stream(client, settings, messages, offer, calls)
            async with contextlib.aclosing(items):
                async for kind, value in items:
                    if kind == "content":
                        content.append(value)
                        yield value
            if not calls:
                return
            ordered = [calls[i] for i in sorted(calls)]
            messages.append(
                {
                    "role": "assistant",
                    "content": "".join(content) or None,
                    "tool_calls": [c.message() for c in ordered],
                }
            )
            for call in ordered:
                result = await self._run_tool(call, runners)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})

    async def aclose(self) -> None:
        """Close the cached SDK clients (their HTTP connection pools)."""
        async with self._lock:
            clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await client.close()

    # -- one streamed completion -----------------------------------------------------------------

    async def _stream(
        self,
        client: AsyncOpenAI,
        settings: LLMSettings,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        calls: dict[int, _ToolCall],
    ) -> AsyncGenerator[tuple[str, str]]:
        """("content", delta) items; tool-call deltas are accumulated into ``calls``."""
        import openai

        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = cast("list[ChatCompletionToolUnionParam]", tools)
        if settings.temperature is not None:
            extra["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            extra["max_tokens"] = settings.max_tokens
        try:
            # Through the endpoint's breaker: an endpoint that is down is refused at once
            # (503 dependency_unavailable to the caller) instead of each turn waiting it out.
            stream = await breaker(endpoint_name("llm", settings.base_url)).call(
                lambda: client.chat.completions.create(
                    model=settings.model,
                    messages=cast("list[ChatCompletionMessageParam]", messages),
                    stream=True,
                    **extra,
                ),
                trips=openai_endpoint_failed,
            )
            # async with: a barge-in cancels us mid-stream, and the response must be closed
            # then, not left holding a pooled connection.
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        delta = choice.delta
                        if delta.content:
                            yield "content", delta.content
                        for tc in delta.tool_calls or ():
                            call = calls.setdefault(tc.index, _ToolCall())
                            call.id = tc.id or call.id
                            if tc.function is not None:
                                call.name = tc.function.name or call.name
                                if tc.function.arguments:
                                    call.arguments.append(tc.function.arguments)
        except openai.OpenAIError as exc:
            raise _engine_error(exc) from exc

    # -- messages and tools ----------------------------------------------------------------------

    async def _messages(self, request: AgentRequest) -> list[dict[str, Any]]:
        system = request.agent.instructions.strip()
        memory = await self._memory_note(request)
        if memory:
            system = f"{system}\n\n{memory}".strip()
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        for m in request.history:
            if m.role in ("user", "assistant", "system"):
                messages.append({"role": m.role, "content": m.content})
        user = request.user_text
        if request.dtmf:
            user = f"{user}\n[keypad: {request.dtmf}]".strip()
        if user:  # none when the agent is to speak first, from its instructions alone
            messages.append({"role": "user", "content": user})
        return messages

    async def _memory_note(self, request: AgentRequest) -> str | None:
        """What this end user told us in earlier conversations that bears on this turn."""
        if self._kb is None or not self._kb.available or not request.end_user_id:
            return None
        if not request.user_text.strip():
            return None
        try:
            hits = await self._kb.recall(
                request.agent.workspace_id, request.end_user_id, request.user_text, 3
            )
        except VoiceStreamError as exc:
            # Memory is a nicety: the conversation goes on without it.
            log.warning("recalling memory failed: %s", exc)
            return None
        facts = [h.text for h in hits if h.score >= _MEMORY_SCORE]
        if not facts:
            return None
        return "In earlier conversations this user told you:\n" + "\n".join(
            f"- {fact}" for fact in facts
        )

    def _tools(
        self, request: AgentRequest, settings: LLMSettings, handlers: Mapping[str, ToolHandler]
    ) -> tuple[list[dict[str, Any]], dict[str, ToolHandler]]:
        tools = [dict(t) for t in settings.tools]
        runners = dict(handlers)
        declared = {str(t.get("function", {}).get("name")) for t in tools}
        if self._kb is not None and self._kb.available and SEARCH_KNOWLEDGE not in declared:
            tools.append(SEARCH_KNOWLEDGE_TOOL)
            runners.setdefault(SEARCH_KNOWLEDGE, self._search_handler(request))
        return tools, runners

    def _search_handler(self, request: AgentRequest) -> ToolHandler:
        kb = self._kb
        assert kb is not None
        agent = request.agent

        async def search(args: dict[str, Any]) -> str:
            query = str(args.get("query") or request.user_text)
            hits = await kb.search(agent.workspace_id, agent.id, query, 3)
            passages = [{"text": h.text, "score": round(h.score, 3)} for h in hits if h.score > 0.2]
            if not passages:
                return json.dumps({"passages": [], "note": "nothing relevant in the documents"})
            return json.dumps({"passages": passages})

        return search

    async def _run_tool(self, call: _ToolCall, runners: Mapping[str, ToolHandler]) -> str:
        handler = runners.get(call.name)
        if handler is None:
            return json.dumps({"error": f"tool {call.name!r} is not available"})
        raw = "".join(call.arguments) or "{}"
        try:
            # The model's arguments echo what the caller said: the same checks as client JSON.
            args = load_json(raw, "the arguments")
        except InvalidJSON:
            return json.dumps({"error": "the arguments were not valid JSON"})
        if not isinstance(args, dict):
            return json.dumps({"error": "the arguments must be a JSON object"})
        try:
            result = await handler(args)
        except VoiceStreamError as exc:
            # The model hears that the tool failed and can still answer.
            log.warning("tool %s failed: %s", call.name, exc)
            return json.dumps({"error": exc.message})
        return result[:_MAX_TOOL_RESULT_CHARS]

    # -- SDK clients -------------------------------------------------------------------------

    async def _client(self, settings: LLMSettings) -> AsyncOpenAI:
        key = (settings.base_url, settings.api_key or "")
        async with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            # Constructing one loads CA certificates and probes the platform: file reads, so
            # off the loop.
            client = await asyncio.to_thread(self._new_client, settings)
            self._clients[key] = client
            while len(self._clients) > _MAX_CLIENTS:
                _, old = self._clients.popitem(last=False)
                await old.close()
            return client

    def _new_client(self, settings: LLMSettings) -> AsyncOpenAI:
        import openai

        client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            # Local endpoints want no key, but the SDK insists on one; never fall back to the
            # process's OPENAI_API_KEY, which may belong to someone else's account.
            api_key=settings.api_key or "unused",
            timeout=openai.Timeout(self._timeout_s, connect=_CONNECT_TIMEOUT_S),
            max_retries=self._max_retries,
        )
        client.platform_headers()  # cached process-wide; reads /etc/os-release once
        return client
