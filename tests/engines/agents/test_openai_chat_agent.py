"""The chat-completions agent through the official SDK, against a local fake endpoint."""

from __future__ import annotations

import dataclasses
import json
import socket
import uuid
from typing import Any

import pytest

from fakes.openai_server import FakeOpenAI
from voicestream.config import load_settings
from voicestream.engines.agents.base import AgentConfig, AgentRequest, ChatMessage
from voicestream.engines.agents.chunking import chunk_document
from voicestream.engines.agents.knowledge import KnowledgeAgent
from voicestream.engines.agents.openai_chat import (
    LLMSettings,
    OpenAIChatAgent,
    merge_llm_settings,
)
from voicestream.engines.agents.resolver import AgentResolver
from voicestream.engines.agents.retrieval import KnowledgeBase
from voicestream.errors import EngineError, EngineUnavailable

OPENING_HOURS = "Our office is open from nine in the morning to five in the evening on weekdays."


async def _reply(engine: OpenAIChatAgent, request: AgentRequest) -> list[str]:
    return [d async for d in engine.respond(request)]


def _agent(agent: AgentConfig, fake: FakeOpenAI, **llm: Any) -> AgentConfig:
    return dataclasses.replace(
        agent,
        instructions="You are the front desk.",
        llm={"base_url": fake.base_url, "model": "fake-model", **llm},
    )


async def test_streams_the_answer_as_deltas(
    fake_llm: FakeOpenAI, agent: AgentConfig, no_blocking: object
) -> None:
    engine = OpenAIChatAgent()
    fake_llm.reply_text("Hello there, how can I help you today?")
    config = _agent(agent, fake_llm, api_key="sk-test-123", temperature=0.2)
    history = (ChatMessage("user", "hi"), ChatMessage("assistant", "hello"))
    deltas = await _reply(engine, AgentRequest(config, "Who are you?", history=history))
    await engine.aclose()
    assert len(deltas) > 3
    assert "".join(deltas) == "Hello there, how can I help you today?"
    seen = fake_llm.requests[-1]
    assert seen.body["stream"] is True and seen.body["model"] == "fake-model"
    assert seen.body["temperature"] == 0.2
    assert seen.headers["Authorization"] == "Bearer sk-test-123"
    assert [m["role"] for m in seen.messages] == ["system", "user", "assistant", "user"]
    assert seen.messages[0]["content"] == "You are the front desk."
    assert seen.messages[-1]["content"] == "Who are you?"
    # Without a knowledge base there is no built-in tool to offer.
    assert "tools" not in seen.body


async def test_tool_call_round_uses_the_knowledge_documents(
    fake_llm: FakeOpenAI,
    knowledge_base: KnowledgeBase,
    agent: AgentConfig,
    no_blocking: object,
) -> None:
    passages = chunk_document(OPENING_HOURS)
    vectors = await knowledge_base.embed_passages(passages)
    await knowledge_base.store_passages(
        agent.workspace_id, agent.id, str(uuid.uuid4()), passages, vectors
    )
    engine = OpenAIChatAgent(knowledge_base)
    fake_llm.reply_tool_call("search_knowledge", {"query": "office opening hours"})
    deltas = await _reply(engine, AgentRequest(_agent(agent, fake_llm), "When are you open?"))
    await engine.aclose()

    assert "".join(deltas) == f"From the documents: {OPENING_HOURS}"
    first, second = fake_llm.requests[-2:]
    assert [t["function"]["name"] for t in first.body["tools"]] == ["search_knowledge"]
    # The second call carries the assistant's tool call and our tool result.
    call = second.messages[-2]
    assert call["role"] == "assistant"
    assert call["tool_calls"][0]["function"]["name"] == "search_knowledge"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {
        "query": "office opening hours"
    }
    result = second.messages[-1]
    assert result["role"] == "tool" and result["tool_call_id"] == call["tool_calls"][0]["id"]
    assert OPENING_HOURS in result["content"]


async def test_client_tools_run_through_handlers(fake_llm: FakeOpenAI, agent: AgentConfig) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "book_table",
            "description": "Book a table.",
            "parameters": {"type": "object", "properties": {"people": {"type": "integer"}}},
        },
    }
    config = _agent(agent, fake_llm, tools=[tool])
    booked: list[dict[str, Any]] = []

    async def book_table(args: dict[str, Any]) -> str:
        booked.append(args)
        return json.dumps({"passages": [{"text": "Table booked for 4."}]})

    engine = OpenAIChatAgent()
    fake_llm.reply_tool_call("book_table", {"people": 4})
    request = AgentRequest(config, "A table for four please")
    text = "".join(
        [d async for d in engine.respond_with_tools(request, {"book_table": book_table})]
    )
    assert booked == [{"people": 4}]
    assert text == "From the documents: Table booked for 4."

    # Without a handler, the model hears the tool is unavailable and answers anyway.
    fake_llm.reply_tool_call("book_table", {"people": 2})
    fake_llm.reply_text("I cannot book right now.")
    assert "".join(await _reply(engine, request)) == "I cannot book right now."
    assert "not available" in fake_llm.requests[-1].messages[-1]["content"]
    await engine.aclose()


async def test_tool_rounds_are_bounded(fake_llm: FakeOpenAI, agent: AgentConfig) -> None:
    engine = OpenAIChatAgent(max_tool_rounds=2)
    tool = {"type": "function", "function": {"name": "loop", "parameters": {"type": "object"}}}
    for _ in range(2):
        fake_llm.reply_tool_call("loop", {})
    fake_llm.reply_text("Giving up on tools.")
    text = "".join(await _reply(engine, AgentRequest(_agent(agent, fake_llm, tools=[tool]), "go")))
    await engine.aclose()
    assert text == "Giving up on tools."
    assert "tools" not in fake_llm.requests[-1].body  # the last round must answer in words


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (400, False)])
async def test_http_errors_become_engine_errors(
    fake_llm: FakeOpenAI, agent: AgentConfig, status: int, retryable: bool
) -> None:
    engine = OpenAIChatAgent(max_retries=0)
    fake_llm.reply_error(status, "scripted failure")
    with pytest.raises(EngineError) as exc:
        await _reply(engine, AgentRequest(_agent(agent, fake_llm), "hi"))
    await engine.aclose()
    assert exc.value.retryable is retryable
    assert exc.value.details["status"] == status


async def test_an_error_inside_the_stream_is_an_engine_error(
    fake_llm: FakeOpenAI, agent: AgentConfig
) -> None:
    engine = OpenAIChatAgent()
    fake_llm.reply_stream_error("Partial answer")
    deltas: list[str] = []
    with pytest.raises(EngineError) as exc:
        async for delta in engine.respond(AgentRequest(_agent(agent, fake_llm), "hi")):
            deltas.append(delta)
    await engine.aclose()
    assert "".join(deltas) == "Partial answer" and exc.value.retryable


async def test_an_unreachable_endpoint_is_a_retryable_engine_error(agent: AgentConfig) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = dataclasses.replace(
        agent, llm={"base_url": f"http://127.0.0.1:{port}/v1", "model": "m"}
    )
    engine = OpenAIChatAgent(max_retries=0)
    with pytest.raises(EngineError) as exc:
        await _reply(engine, AgentRequest(config, "hi"))
    await engine.aclose()
    assert exc.value.retryable


async def test_stopping_early_closes_the_stream(fake_llm: FakeOpenAI, agent: AgentConfig) -> None:
    engine = OpenAIChatAgent()
    fake_llm.reply_text("one two three four five six seven eight", delay_s=0.02)
    stream = engine.respond(AgentRequest(_agent(agent, fake_llm), "count"))
    first = await anext(stream)
    await stream.aclose()  # a barge-in
    assert first == "one"
    fake_llm.reply_text("still works")
    assert "".join(await _reply(engine, AgentRequest(_agent(agent, fake_llm), "again"))) == (
        "still works"
    )
    await engine.aclose()


async def test_memories_reach_the_system_prompt(
    fake_llm: FakeOpenAI, knowledge_base: KnowledgeBase, agent: AgentConfig
) -> None:
    await knowledge_base.remember(agent, "visitor-9", "My favourite colour is green.")
    engine = OpenAIChatAgent(knowledge_base)
    request = AgentRequest(
        _agent(agent, fake_llm), "What is my favourite colour?", end_user_id="visitor-9"
    )
    await _reply(engine, request)
    assert "My favourite colour is green." in fake_llm.requests[-1].messages[0]["content"]
    await _reply(engine, dataclasses.replace(request, end_user_id="visitor-10"))
    assert "green" not in fake_llm.requests[-1].messages[0]["content"]
    await engine.aclose()


def test_settings_merge_agent_over_server() -> None:
    server = LLMSettings("http://llm.internal/v1", "big-model", api_key="server-key")
    merged = merge_llm_settings({"model": "small-model"}, server)
    assert (merged.base_url, merged.model, merged.api_key) == (
        "http://llm.internal/v1",
        "small-model",
        "server-key",
    )
    # The server's key never goes to an endpoint the agent chose.
    other = merge_llm_settings({"base_url": "http://elsewhere/v1", "model": "m"}, server)
    assert other.api_key is None
    with pytest.raises(EngineUnavailable):
        merge_llm_settings(None, None)


def test_resolver_picks_the_engine(knowledge_base: KnowledgeBase, agent: AgentConfig) -> None:
    plain = AgentResolver.build(load_settings({}), knowledge_base)
    assert isinstance(plain.engine_for(agent), KnowledgeAgent)
    with_llm = dataclasses.replace(agent, llm={"base_url": "http://x/v1", "model": "m"})
    assert isinstance(plain.engine_for(with_llm), OpenAIChatAgent)
    server_wide = AgentResolver.build(
        load_settings({"VOICESTREAM_LLM_BASE_URL": "http://llm/v1", "VOICESTREAM_LLM_MODEL": "m"}),
        knowledge_base,
    )
    assert isinstance(server_wide.engine_for(agent), OpenAIChatAgent)
